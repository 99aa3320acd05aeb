"""Architecture search: the space over cells, training-free scores, strategies, refinement by short trainings,
and the run driver (the network it simulates is the core's, :mod:`hwnas.sim`).

The Python API's verb for it is :func:`hwnas.api.search` (``hwnas.search(...)``).
"""
