"""The `xmodal` command line: the one place that composes every layer."""
