"""The FastAPI service: search over a published index with an ONNX Runtime engine."""
