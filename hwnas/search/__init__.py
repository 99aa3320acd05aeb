"""Architecture search: the space over cells, training-free scores, strategies, refinement by short trainings,
and the run driver (the network it simulates is the core's, :mod:`hwnas.sim`).

Called, ``hwnas.search(...)`` is :func:`hwnas.api.search`.
"""

from .. import make_callable

make_callable(__name__)
