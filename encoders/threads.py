"""ONNX Runtime thread settings an engine is opened with, importable without onnxruntime (the
service's settings take their defaults from here)."""

# How long an idle ONNX Runtime thread spins for more work before it sleeps, in µs: a short
# spin covers the gaps between operators and between batches, and gives the core back soon
# after the load stops. Chosen by same-run A/B against no spinning and ONNX Runtime's default
# (bench/results/spin.md has the reasoning, spin-ab.md and spin-ab-minilm.md the figures).
SPIN_US = 300
