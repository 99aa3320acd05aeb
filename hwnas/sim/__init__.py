"""The core of hwnas: the spiking network every stage shares.

The neuron (:mod:`.neuron`), activity counters (:mod:`.activity`), Loihi's weight quantisation
(:mod:`.quantize`), the synaptic ops (:mod:`.ops`), the graph and its one timing rule (:mod:`.graph`), the torch
simulator (:mod:`.network`), the lowering to Loihi integers (:mod:`.lowering`) and the bit-exact integer twin
(:mod:`.integer`). This package imports nothing from ``hwnas.nas``, ``training``, ``formats``, ``backends``
or ``hw_models`` (``tests/test_imports.py`` checks it).
"""
