"""Offline index build, index bundles and search. Serving-path modules never import torch."""
