"""Exporting trained networks: NIR graphs (read back by :func:`hwnas.export.nir.load`), ONNX unrolled in time,
lava-dl netx HDF5.

Called, ``hwnas.export(...)`` is :func:`hwnas.api.export`.
"""

from .. import make_callable

make_callable(__name__)
