"""Running exported networks on other simulators (Lava's Loihi 2 model, Norse) and on hwnas' own, through one
registry of backends (:mod:`.backends`), and comparing them (:mod:`.compare`, :mod:`.validate`). Lava and Norse
are imported lazily.

The Python API's verb for it is :func:`hwnas.api.deploy` (``hwnas.deploy(...)``).
"""
