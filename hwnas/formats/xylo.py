"""A dense network in the xylo arithmetic as the NIR graph SynSense's rockpool maps onto a Xylo core (issue 34).

The graph is the lowered core's (:func:`hwnas.sim.xylo.lower_xylo`), written in the units and conventions
rockpool's ``from_nir``, ``mapper`` and ``global_quantize`` read, so that their mapping finds the same integers:

* every connection a ``Linear`` node holding the int8 weights (as floats); the largest weight of each connection
  group is 127, so ``global_quantize`` scales by exactly 1;
* every population a ``CubaLIF`` node: ``tau_syn = dt 2^dash_syn`` and ``tau_mem = dt 2^dash_mem`` (rockpool's
  mapper takes ``log2(tau / dt)`` as the bit shifts), ``r = 2^dash_mem - 1`` (rockpool reads dt as
  ``tau_mem / (1 + r)``), the threshold and the bias (``v_leak``) in weight units;
* node names are ``input``, ``output``, ``lif_<population>`` and ``w_<source>_to_<destination>`` for connections,
  dots replaced (nirtorch makes them module names; ``input`` and ``output`` are rockpool's graph ends).

The neuron it describes is Xylo's (subtractive reset, several spikes per step, input decayed with the current),
not hwnas' NIR neuron, so hwnas' own NIR reader refuses it (one line, naming ``hwnas validate``), as do Lava and
Norse through hwnas; ``hwnas export`` writes it as the run's ``model.nir``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..sim.graph import INPUT
from ..sim.xylo import hidden_layout, lower_xylo

DEFAULT_XYLO_DT_S = 1e-3
PROFILE = "xylo"


def node_name(name: str) -> str:
    """The NIR node of a population (``input`` for the input)."""
    return "input" if name == INPUT else "lif_" + name.replace(".", "_")


def to_xylo_nir(net, arch=None, dt_s: float = DEFAULT_XYLO_DT_S):
    """The NIR graph rockpool maps onto the core that computes ``net`` (a dense network in the xylo arithmetic);
    ``arch`` is recorded in its metadata (``hwnas.architecture``), with ``hwnas.profile`` ``xylo``."""
    import json

    import nir

    core = lower_xylo(net)
    bounds = hidden_layout(net)
    hidden = list(bounds)
    outputs = net.populations[net.output].neurons
    nodes = {"input": nir.Input(input_type={"input": np.array([core.inputs])})}
    edges = []

    def neuron(lo, hi, dash_syn, dash_mem, threshold, bias):
        n = hi - lo
        return nir.CubaLIF(tau_syn=np.full(n, dt_s * 2.0 ** dash_syn), tau_mem=np.full(n, dt_s * 2.0 ** dash_mem),
                           r=np.full(n, 2.0 ** dash_mem - 1.0), v_leak=np.asarray(bias, np.float64),
                           v_threshold=np.asarray(threshold, np.float64), w_in=np.ones(n))

    # nodes in update order, each population after its incoming weights: rockpool takes the last node nirtorch
    # executes as the graph's output
    linked = set()
    for name in hidden + [net.output]:
        dst_lo, dst_hi = (0, outputs) if name == net.output else bounds[name]
        for conn in net.active_connections():
            if conn.dst != name or (conn.src, conn.dst) in linked:
                continue  # connections between the same populations are one matrix on the core
            linked.add((conn.src, conn.dst))
            if conn.src == INPUT:
                weights = core.weights_in[:, dst_lo:dst_hi, 0]
            else:
                src_lo, src_hi = bounds[conn.src]
                matrix = core.weights_out if name == net.output else core.weights_rec[:, :, 0]
                weights = matrix[src_lo:src_hi, dst_lo:dst_hi]
            link = f"w_{conn.src}_to_{conn.dst}".replace(".", "_")
            nodes[link] = nir.Linear(weight=weights.T.astype(np.float64))
            edges += [(node_name(conn.src), link), (link, node_name(name))]
        if name == net.output:
            nodes[node_name(name)] = neuron(0, outputs, core.dash_syn_out[0], core.dash_mem_out[0],
                                             core.threshold_out, core.bias_out)
        else:
            nodes[node_name(name)] = neuron(dst_lo, dst_hi, core.dash_syn[dst_lo, 0], core.dash_mem[dst_lo],
                                             core.threshold[dst_lo:dst_hi], core.bias[dst_lo:dst_hi])
    nodes["output"] = nir.Output(output_type={"output": np.array([outputs])})
    edges.append((node_name(net.output), "output"))
    metadata = {"hwnas.profile": PROFILE, "hwnas.dt_s": float(dt_s), "hwnas.timing": "xylo"}
    if arch is not None:
        metadata["hwnas.architecture"] = json.dumps(arch.to_dict())
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def is_xylo_graph(graph) -> bool:
    """True for a graph :func:`to_xylo_nir` wrote."""
    value = (getattr(graph, "metadata", None) or {}).get("hwnas.profile")
    return (value.decode() if isinstance(value, bytes) else value) == PROFILE


def export_xylo(net, path: str | Path, arch=None, dt_s: float = DEFAULT_XYLO_DT_S) -> None:
    """Write :func:`to_xylo_nir`'s graph to ``path`` (atomically)."""
    from .nir import write

    write(path, to_xylo_nir(net, arch, dt_s))
