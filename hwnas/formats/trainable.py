"""Another tool's NIR graph as a network hwnas can train (``hwnas train --from``), and the graph file kept inside
``model.pt`` so that the trained network can be rebuilt from it.

Every connection must be an op with trainable weights or none (pooling, identity): convolutions of any stride,
padding and groups, dense layers, and sum pooling before them (:class:`~hwnas.sim.ops.PooledLayer`). A chain the
reader can only compose into a fixed matrix (pooling after the weights, two weighted nodes in a row, average
pooling into a dense layer, a ``Scale``) is refused in one line naming its nodes. An input gain of a neuron node
(``r * dt`` of an IF, ``w_in``) is absorbed into the weights of the connections into it. Biases the graph gives as
zero stay zero (the network as its author built it; a connection bias is a neuron bias on Loihi)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import NirError
from ..sim.network import SpikingNetwork
from ..sim.ops import Conv, LinearChain, Synapse
from ..sim.ops.chain import Scaled
from .nir import load, read_graph


def trainable_network(graph, dt_s: float, timing: str) -> SpikingNetwork:
    """The network a NIR graph describes, with its weights as trainable parameters (see the module docstring)."""
    net = load(graph, dt_s=dt_s, timing=timing)
    for conn in net.connections:
        synapse = net.synapses[conn.module_key]
        names = net.nir_chains.get(conn.module_key, (conn.src, conn.dst))
        where = f"{conn.src} -> {conn.dst}" + (f" (nodes {' -> '.join(names[1:-1])})" if len(names) > 2 else "")
        if isinstance(synapse, Scaled):
            synapse = _absorbed(synapse, where)
            net.synapses[conn.module_key] = synapse
        if isinstance(synapse, LinearChain):
            raise NirError(f"connection {where} cannot be trained: hwnas trains sum pooling (and Flatten) followed by "
                           "one Conv2d, Linear or Affine; put other pooling after a neuron node")
        if isinstance(synapse, Conv) and not bool(synapse.conv.bias.detach().any()):
            synapse.conv.bias.requires_grad_(False)  # no bias in the author's network: none trained in
    net.weights_changed()
    return net


def _absorbed(scaled: Scaled, where: str) -> Synapse:
    """The op inside ``scaled`` with the gain multiplied into its weights (and bias)."""
    module = scaled.inner.weight_module()
    if module is None:
        raise NirError(f"connection {where} cannot be trained: its destination takes input with gain "
                       f"{scaled.gain:g} through a connection without weights (give the neuron node r = 1 / dt)")
    with torch.no_grad():
        module.weight.mul_(scaled.gain)
        if getattr(module, "bias", None) is not None:
            module.bias.mul_(scaled.gain)
    return scaled.inner


def graph_tensor(path: str | Path) -> torch.Tensor:
    """A NIR file's bytes as a uint8 tensor (what ``torch.load(weights_only=True)`` reads back)."""
    return torch.as_tensor(np.frombuffer(Path(path).read_bytes(), dtype=np.uint8).copy())


def graph_from_tensor(data: torch.Tensor):
    """The NIR graph :func:`graph_tensor` kept (read through a temporary file: ``nir.read`` reads files)."""
    with tempfile.TemporaryDirectory(prefix="hwnas-graph-") as scratch:
        path = Path(scratch) / "source.nir"
        path.write_bytes(data.cpu().numpy().astype(np.uint8).tobytes())
        return read_graph(path)
