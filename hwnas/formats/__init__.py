"""Exporting trained networks: NIR graphs (read back by :func:`hwnas.formats.nir.load`), ONNX unrolled in time,
lava-dl netx HDF5.

The Python API's verb for it is :func:`hwnas.api.export` (``hwnas.export(...)``).
"""
