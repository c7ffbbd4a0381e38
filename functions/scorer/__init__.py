"""The scorer function: the semantic complexity classifier (ONNX, int8) behind ``POST /v1/classify``.

Serving path: onnxruntime + ``tokenizers`` + numpy only; torch and transformers are never imported.
"""
