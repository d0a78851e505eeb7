"""TensorRT side of ``adapler::TokenDrop``: C++ IPluginV3 sources (built with CMake where TRT_ROOT
points at a TensorRT SDK) and the quickly deployable Python plugin in :mod:`plugins.token_drop.trt.qdp`.

Nothing here imports TensorRT at package import time.
"""
