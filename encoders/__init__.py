"""Model families, preprocessing, tokenisation, ONNX export and the ONNX Runtime engine.

Only `engine`, `bundle`, `preprocess`, `tokenizer`, `config` and `errors` are on the
serving path; they never import torch. Model definitions and export need the `train` extra.
"""
