"""The portable NIR profile: hwnas' graph rewritten with the nodes and conventions other tools read.

hwnas' own profile (:func:`hwnas.formats.nir.to_nir`) round-trips exactly through hwnas, Lava and Norse, but uses
``Threshold`` for OR neurons, ``SumPool2d`` and ``AvgPool2d`` nodes, dotted node names and its own time step.
snnTorch 1.0 (``snntorch.import_nir.import_from_nir``) knows none of the first two, executes node names as
attribute names, and reads time constants with a fixed step of 1e-4 s. The portable profile writes the same
network as:

- ``LIF`` with ``tau = dt`` (no memory: the membrane is the input of the step) in place of ``Threshold``;
- pooling as a strided ``Conv2d`` joining each channel to itself (weights 1 for sum pooling, 1/k^2 for average
  pooling);
- time constants for ``dt = 1e-4`` s (recorded in ``hwnas.dt_s``);
- node names of letters, digits and underscores.

The network computes the same: hwnas reads the portable graph back to the same spikes (tested). Other readers
need zero reset (snnTorch: ``reset_mechanism="zero"``); feedback cycles are beyond snnTorch's reader.
"""

from __future__ import annotations

import json
import re

import numpy as np

from ..errors import NirError

PORTABLE_DT_S = 1e-4  # the step snnTorch assumes when it reads (and writes) NIR time constants


def _plain(name: str, taken: set[str]) -> str:
    """A node name of letters, digits and underscores, unique among ``taken``."""
    plain = re.sub(r"[^0-9A-Za-z_]", "_", name) or "node"
    if plain[0].isdigit():
        plain = f"n_{plain}"
    candidate, number = plain, 1
    while candidate in taken:
        number += 1
        candidate = f"{plain}_{number}"
    taken.add(candidate)
    return candidate


def _tau(tau, dt_s: float) -> np.ndarray:
    """A time constant written for ``dt_s`` rewritten for the portable step, in float64: readers compute the decay
    as 1 - dt / tau, and float32 taus would move it by an ulp (and with it spikes at the threshold)."""
    decay = dt_s / np.asarray(tau, dtype=np.float64)
    decay = np.float32(decay).astype(np.float64)  # hwnas wrote tau = dt / decay in float32: the decay it meant
    return PORTABLE_DT_S / decay


def _pool_conv(node, shape: tuple[int, ...], value_of_k) -> object:
    """A non-overlapping k x k pooling node on input ``shape`` (C, H, W) as a Conv2d with stride k whose kernel
    connects each channel to itself only (NIR 1.0's type inference does not follow grouped convolutions)."""
    import nir

    k = int(np.asarray(node.kernel_size).reshape(-1)[0])
    channels = shape[0]
    weight = np.zeros((channels, channels, k, k), dtype=np.float32)
    weight[np.arange(channels), np.arange(channels)] = value_of_k(k)
    return nir.Conv2d(input_shape=(shape[1], shape[2]), weight=weight, stride=k, padding=0, dilation=1, groups=1,
                      bias=np.zeros(channels, dtype=np.float32))


def to_portable_nir(net, arch=None, dt_s: float | None = None):
    """The portable NIR graph of a (batch-norm folded) network (see the module docstring)."""
    from ..sim.graph import INPUT
    from ..sim.ops.chain import node_output_shape
    from .nir import DEFAULT_DT_S, to_nir

    graph = to_nir(net, arch, dt_s or DEFAULT_DT_S)
    shapes = {}  # the input shape of every node of every connection's chain
    for conn in net.active_connections():
        shape = net.input_shape if conn.src == INPUT else net.populations[conn.src].shape
        for node_name, node in net.synapses[conn.module_key].nir_nodes(conn.module_key, shape):
            shapes[node_name] = shape
            shape = node_output_shape(node_name, node, shape)
    return portable_graph(graph, shapes)


def _threshold_as_lif(name, node, dt_s, shapes):
    import nir

    theta = np.asarray(node.threshold, dtype=np.float64)
    return nir.LIF(tau=np.full_like(theta, PORTABLE_DT_S), r=np.ones_like(theta), v_leak=np.zeros_like(theta),
                   v_threshold=theta, v_reset=np.zeros_like(theta))


def _lif(name, node, dt_s, shapes):
    import nir

    return nir.LIF(tau=_tau(node.tau, dt_s), r=node.r, v_leak=node.v_leak, v_threshold=node.v_threshold,
                   v_reset=node.v_reset)


def _cuba_lif(name, node, dt_s, shapes):
    import nir

    return nir.CubaLIF(tau_syn=_tau(node.tau_syn, dt_s), tau_mem=_tau(node.tau_mem, dt_s), r=node.r,
                       v_leak=node.v_leak, v_threshold=node.v_threshold, v_reset=node.v_reset, w_in=node.w_in)


def _pool_as_conv(name, node, dt_s, shapes):
    if name not in shapes:
        raise NirError(f"portable profile: no shape known at pooling node '{name}'")
    one = (lambda k: 1.0) if type(node).__name__ == "SumPool2d" else (lambda k: 1.0 / (k * k))
    return _pool_conv(node, shapes[name], one)


# NIR node type -> its portable form (name, node, hwnas' dt_s, pooling input shapes) -> node; other nodes stay
PORTABLE_REWRITES = {"Threshold": _threshold_as_lif, "LIF": _lif, "CubaLIF": _cuba_lif, "SumPool2d": _pool_as_conv,
                     "AvgPool2d": _pool_as_conv}


def portable_graph(graph, shapes: dict[str, tuple[int, ...]]):
    """The portable profile of an hwnas NIR ``graph`` (see the module docstring); ``shapes`` gives the input shape
    (C, H, W) of every pooling node, which hwnas' writer knows."""
    import nir

    metadata = dict(graph.metadata or {})
    dt_s = float(metadata.get("hwnas.dt_s", PORTABLE_DT_S))
    taken: set[str] = set()
    names = {name: (name if name in ("input", "output") else _plain(name, taken)) for name in graph.nodes}
    nodes = {}
    for name, node in graph.nodes.items():
        rewrite = PORTABLE_REWRITES.get(type(node).__name__)
        node = rewrite(name, node, dt_s, shapes) if rewrite else node
        nodes[names[name]] = node
    edges = [(names[src], names[dst]) for src, dst in graph.edges]
    metadata["hwnas.dt_s"] = PORTABLE_DT_S
    metadata["hwnas.profile"] = "portable"
    backward = json.loads(metadata.get("hwnas.backward", "[]"))
    if backward:  # the recorded back edges name populations: rename them too
        metadata["hwnas.backward"] = json.dumps([[names.get(s, s), names.get(d, d), t] for s, d, t in backward])
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)
