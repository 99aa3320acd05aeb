"""Running exported networks on other simulators (Lava's Loihi 2 model, Norse) and on hwnas' own, through one
registry of backends (:mod:`.backends`), and comparing them (:mod:`.compare`, :mod:`.validate`). Lava and Norse
are imported lazily.

Called, ``hwnas.deploy(...)`` is :func:`hwnas.api.deploy`.
"""

from .. import make_callable

make_callable(__name__)
