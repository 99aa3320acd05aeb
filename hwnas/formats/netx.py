"""Export to lava-dl's netx HDF5, the format people with Loihi 2 hardware deploy from.

netx holds a sequential network: an input, then convolution and dense layers, each a synapse followed by
CUBA neurons (``lava.lib.dl.netx.hdf5.Network``). It has no pooling layer, no skip fan-in and no feedback, so
only cells whose connections form one chain export; max-pool downsampling does not, average-pool
downsampling does (pooling then a convolution is one convolution with stride k and a k-times larger kernel).

netx stores weights as integers at scale 64 (w_int = round(64 w), docs/ARCHITECTURE.md), without the per-layer
exponent hwnas' quantisation uses for small weights; weights are rounded to even integers (Lava's Dense
drops the lowest bit of mixed-sign 8-bit weights), so the file computes with slightly coarser weights than
the trained network. :func:`netx_twin` gives the lowered network of exactly what the file holds, for hwnas'
integer simulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import NetxError
from ..io_utils import write_bytes_atomic
from ..sim.graph import INPUT, Connection
from ..sim.lowering import LoweredConnection, LoweredNetwork, LoweredPopulation
from ..sim.network import SpikingNetwork
from ..sim.ops import Synapse
from ..sim.quantize import WEIGHT_SCALE

MAX_WEIGHT = 254   # even 8-bit mixed-sign weights: -256 .. 254
MIN_WEIGHT = -256


@dataclass
class NetxLayer:
    """One netx layer: kind ``conv`` or ``dense``, the destination population, integer weights, geometry."""

    kind: str
    population: str
    shape: tuple[int, ...]          # output shape, hwnas order (C, H, W) or (N,)
    weight: np.ndarray              # integers: conv (C_out, C_in, k, k), dense (out, in)
    stride: int = 1
    padding: int = 0
    bias: np.ndarray | None = None  # integers at scale 64: per channel (conv) or per neuron (dense)
    flatten_before: bool = False    # the source is a feature map (a netx flatten layer precedes a dense one)


def netx_chain(net: SpikingNetwork) -> list[Connection]:
    """The connections from the input to the output when they form one chain; else :class:`NetxError`."""
    conns = net.active_connections()
    for conn in conns:
        if conn.backward:
            raise NetxError(f"feedback connection {conn.dst} -> {conn.src}: netx holds feed-forward chains only "
                            "(search without --allow-backward)")
    chain, node = [], INPUT
    while node != net.output:
        outgoing = [c for c in conns if c.src == node]
        if len(outgoing) != 1:
            raise NetxError(f"'{node}' feeds {len(outgoing)} connections: netx holds a single chain of layers "
                            "(choose a cell whose edges form one path, without skip or parallel edges)")
        conn = outgoing[0]
        incoming = [c for c in conns if c.dst == conn.dst]
        if len(incoming) != 1:
            raise NetxError(f"population '{conn.dst}' adds up {len(incoming)} connections (skip fan-in): netx holds "
                            "a single chain of layers")
        chain.append(conn)
        node = conn.dst
    return chain


def _integer(weight: torch.Tensor, where: str) -> np.ndarray:
    scaled = weight.detach().double().cpu().numpy() * WEIGHT_SCALE
    integers = np.round(scaled / 2.0) * 2.0
    if integers.max(initial=0) > MAX_WEIGHT or integers.min(initial=0) < MIN_WEIGHT:
        raise NetxError(f"layer {where}: weights up to {np.abs(scaled).max() / WEIGHT_SCALE:.4g} exceed netx's 8-bit "
                        f"integer weights at scale {WEIGHT_SCALE} (|w| <= {-MIN_WEIGHT / WEIGHT_SCALE:g})")
    return integers.astype(np.int64)


def netx_layers(net: SpikingNetwork) -> list[NetxLayer]:
    """The netx layers of a folded network, in order; :class:`NetxError` names the first that netx cannot hold."""
    if not net.is_folded:
        raise NetxError("batch-norm is not folded: export a trained network")
    shapes = {INPUT: net.input_shape, **{name: pop.shape for name, pop in net.populations.items()}}
    layers = []
    for conn in netx_chain(net):
        synapse = net.synapses[conn.module_key]
        where = f"{conn.src} -> {conn.dst}"
        spec = synapse.netx_layer(shapes[conn.src], where)
        layer = NetxLayer(spec.kind, conn.dst, shapes[conn.dst], _integer(spec.weight, where), spec.stride, spec.padding)
        layer.bias = _bias(net, layer, synapse)
        layer.flatten_before = layer.kind == "dense" and len(shapes[conn.src]) > 1
        layers.append(layer)
    return layers


def _neuron_fields(net: SpikingNetwork, layer: NetxLayer) -> dict:
    params = net.populations[layer.population].params
    return {"type": "CUBA", "iDecay": int(round(4096 * params.du)), "vDecay": min(int(round(4096 * params.dv)), 4095),
            "vThMant": int(round(WEIGHT_SCALE * params.theta)), "refDelay": 1, "gradedSpike": False}


def _bias(net: SpikingNetwork, layer: NetxLayer, synapse: Synapse) -> np.ndarray:
    """Integer bias at scale 64: per channel for convolutions, per neuron for dense layers."""
    channels = layer.shape[0]
    bias = np.full(channels, float(net.populations[layer.population].params.bias))
    added = synapse.channel_bias()
    if added is not None:
        bias = bias + added.double().cpu().numpy()
    return np.round(bias * WEIGHT_SCALE).astype(np.int64)


def write_netx(net: SpikingNetwork, path: str | Path) -> list[NetxLayer]:
    """Write the netx HDF5 of ``net`` (atomically) and return its layers."""
    import io

    import h5py

    layers = netx_layers(net)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        group = f.create_group("layer")
        entries = [("input", None)] + [(layer.kind, layer) for layer in layers]
        index = 0
        for kind, layer in entries:
            if layer is not None and layer.flatten_before:
                flatten = group.create_group(str(index))
                flatten.create_dataset("type", data=np.array([b"flatten"]))
                index += 1
            g = group.create_group(str(index))
            g.create_dataset("type", data=np.array([kind.encode("ascii")]))
            index += 1
            if layer is None:
                g.create_dataset("shape", data=np.array(net.input_shape))
                continue
            g.create_dataset("shape", data=np.array(layer.shape))
            g.create_dataset("weight", data=layer.weight.astype(np.float64))
            g.create_dataset("bias", data=layer.bias.astype(np.float64))
            for key, value in _neuron_fields(net, layer).items():
                g.create_dataset(f"neuron/{key}", data=np.array([value.encode("ascii")]) if key == "type" else value)
            if kind == "conv":
                for key, value in (("stride", layer.stride), ("padding", layer.padding), ("dilation", 1),
                                   ("groups", 1)):
                    g.create_dataset(key, data=value)
    write_bytes_atomic(path, buffer.getvalue())
    return layers


def netx_twin(net: SpikingNetwork, layers: list[NetxLayer]):
    """The lowered network of exactly what the netx file holds (integer weights, exponent 0), for
    :func:`hwnas.sim.integer.simulate_fixed` in zero-delay timing."""
    import scipy.sparse as sparse


    populations, connections = {}, []
    source, source_shape = INPUT, net.input_shape
    for layer in layers:
        params = net.populations[layer.population].params
        neurons = int(np.prod(layer.shape))
        per_neuron = np.repeat(layer.bias, neurons // layer.shape[0]) / WEIGHT_SCALE
        populations[layer.population] = LoweredPopulation(layer.population, layer.shape, params.du, params.dv,
                                                          params.theta, per_neuron)
        if layer.kind == "conv":
            basis = torch.eye(int(np.prod(source_shape)), dtype=torch.float64).reshape(-1, *source_shape)
            images = F.conv2d(basis, torch.as_tensor(layer.weight, dtype=torch.float64), stride=layer.stride,
                              padding=layer.padding)
            matrix = images.reshape(basis.shape[0], -1).T.round().numpy()
        else:
            matrix = layer.weight.astype(np.float64)
        integers = sparse.csr_matrix(matrix.astype(np.int64))
        connections.append(LoweredConnection(source, layer.population, False, "matrix",
                                             integers.astype(np.float64) / WEIGHT_SCALE, integers, 0))
        source, source_shape = layer.population, layer.shape
    return LoweredNetwork(tuple(net.input_shape), populations, connections, layers[-1].population, len(layers))
