"""Exporting trained networks: NIR graphs (read back by :func:`hwnas.export.nir.load`), ONNX unrolled in time,
lava-dl netx HDF5."""
