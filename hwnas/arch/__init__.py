"""Architectures: the genotype (:mod:`hwnas.arch.genotype`) and the network it builds (:mod:`hwnas.arch.builder`).

Every stage reads architectures (search writes them, train builds them, export records them); this package sits
just above the core simulator (:mod:`hwnas.sim`) and below every stage.
"""
