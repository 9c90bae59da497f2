"""Benchmarks, run as `xmodal bench <name>`. Speeds are reported as ratios measured side by
side in one run, since absolute times on a shared machine drift."""
