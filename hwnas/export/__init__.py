"""Exporting trained networks: NIR graphs (read back by :func:`hwnas.export.nir.load`)."""
