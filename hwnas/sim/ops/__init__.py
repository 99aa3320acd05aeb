"""The synaptic connections (ops) of hwnas' networks, one file each; ``OPS`` is the registry that reading a NIR
graph tries in turn. A new op: a :class:`Synapse` subclass in a new file, added to ``OPS``."""

from __future__ import annotations

from ...errors import NirError
from .avgpool import AvgPoolThen
from .base import Lowered, NetxSpec, Synapse
from .chain import LinearChain
from .conv import Conv, ConvBN
from .identity import Identity
from .linear import FlattenLinear
from .sumpool import SumPool
from .weighted import PooledLayer

# first the ops hwnas writes (kept as their own ops), then PooledLayer (other tools' layers, trainable), LinearChain
# last: it reads any chain of linear nodes
OPS: tuple[type[Synapse], ...] = (Identity, SumPool, AvgPoolThen, Conv, FlattenLinear, ConvBN, PooledLayer, LinearChain)


def synapse_from_nir(chain: list[str], nodes: dict, source_shape: tuple[int, ...], where: str) -> Synapse:
    """The op that a chain of NIR nodes (names, from source to destination population) computes."""
    kinds = [type(nodes[name]).__name__ for name in chain]

    def read_chain(sub_chain: list[str], shape: tuple[int, ...]) -> Synapse:
        return synapse_from_nir(sub_chain, nodes, shape, where)

    refused = None
    for op in OPS:
        try:
            synapse = op.read_nir(kinds, chain, nodes, source_shape, where, read_chain)
        except NirError as exc:  # a variant this op cannot hold: a later op (LinearChain) may
            # LinearChain, the last and most general, names the problem itself; before it, the first refusal
            refused = exc if op is OPS[-1] or refused is None else refused
            continue
        if synapse is not None:
            return synapse
    if refused is not None:
        raise refused
    raise NirError(f"unsupported synapse chain {where}: {' -> '.join(f'{n} ({k})' for n, k in zip(chain, kinds))}")


__all__ = ["OPS", "AvgPoolThen", "Conv", "ConvBN", "FlattenLinear", "Identity", "LinearChain", "Lowered", "NetxSpec",
           "PooledLayer", "SumPool", "Synapse", "synapse_from_nir"]
