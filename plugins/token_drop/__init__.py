"""The ``adapler::TokenDrop`` op: spec (README.md), NumPy reference, ONNX schema, ORT kernel.

Importing this package is cheap (NumPy only): ``schema`` imports ``onnx`` lazily, and the ORT
build (``build``) and session helper (``ort_session``) are separate submodules.
"""

from .reference import token_drop_reference
from .schema import DOMAIN, OP_TYPE, OP_VERSION, register_onnx_schema

__all__ = ["DOMAIN", "OP_TYPE", "OP_VERSION", "register_onnx_schema", "token_drop_reference"]
