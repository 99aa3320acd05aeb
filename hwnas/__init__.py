"""hwnas: hardware-aware training-free architecture search for spiking neural networks.

The package is importable without Lava; everything that needs Lava lives in ``hwnas.deploy`` and imports
it lazily.
"""

__version__ = "0.1.0"
