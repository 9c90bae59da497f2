"""Datasets, losses, the training loop and evaluation; produces engine bundles through `encoders`."""
