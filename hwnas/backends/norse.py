"""Running a NIR graph in Norse (in its executor's step order), with per-layer spike counts.

The graph is mapped with nirtorch and a node map built from Norse's own neuron modules (``LIBoxCell`` for the
synaptic current, ``LIFBoxCell`` for the membrane), because Norse 1.1.0's ``from_nir`` silently drops nodes it
does not know (``Threshold``, ``AvgPool2d``) and ignores ``r`` on ``LIF`` nodes. Every NIR node must become a
module; a node that does not is an error, never a silent gap.

Norse executes a graph one step per call, in the order of a depth-first trace from the input (nirtorch's
executor): an edge whose source has already run in this step delivers that step's output, an edge from a node
that runs later delivers the previous step's. Two consequences, measured by ``hwnas deploy`` and the tests:
a feedback edge whose source the trace visits first acts within the same step (hwnas, like the chip, delivers
feedback one step later), and on paths of unequal length an intermediate connection node can run after the
neuron it feeds, delaying that path by a step. :func:`norse_step_plan` reads those delays off the executor, so
that hwnas' simulator can compute what Norse computes (the reference ``hwnas_norse_order`` of ``hwnas validate``
and ``hwnas deploy --backend norse``).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

from ..errors import HwnasError


class NorseError(HwnasError):
    """A graph cannot be run in Norse."""


def _tensor(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=torch.float32)


class _CubaLIF(torch.nn.Module):
    """Norse's leaky-integrator synapse feeding Norse's box LIF: w_in and r as in NIR's CubaLIF equations."""

    def __init__(self, node, dt_s: float) -> None:
        super().__init__()
        from norse.torch.module.leaky_integrator_box import LIBoxCell, LIBoxParameters
        from norse.torch.module.lif_box import LIFBoxCell, LIFBoxParameters

        self.w_in, self.r = _tensor(node.w_in), _tensor(node.r)
        self.synapse = LIBoxCell(LIBoxParameters(tau_mem_inv=1 / _tensor(node.tau_syn),
                                                 v_leak=torch.zeros_like(_tensor(node.tau_syn))), dt=dt_s)
        self.membrane = LIFBoxCell(LIFBoxParameters(tau_mem_inv=1 / _tensor(node.tau_mem), v_th=_tensor(node.v_threshold),
                                                    v_leak=_tensor(node.v_leak)), dt=dt_s)

    def forward(self, x, state=None):
        state = state or (None, None)
        current, synapse_state = self.synapse(self.w_in * x, state[0])
        spikes, membrane_state = self.membrane(self.r * current, state[1])
        return spikes, (synapse_state, membrane_state)


class _LIF(torch.nn.Module):
    """Norse's box LIF with NIR's resistance r applied to the input (Norse's own import drops r)."""

    def __init__(self, node, dt_s: float) -> None:
        super().__init__()
        from norse.torch.module.lif_box import LIFBoxCell, LIFBoxParameters

        self.r = _tensor(node.r)
        self.membrane = LIFBoxCell(LIFBoxParameters(tau_mem_inv=1 / _tensor(node.tau), v_th=_tensor(node.v_threshold),
                                                    v_leak=_tensor(node.v_leak)), dt=dt_s)

    def forward(self, x, state=None):
        return self.membrane(self.r * x, state)


class _IF(torch.nn.Module):
    """Norse's integrate-and-fire cell (no leak: v += input, a spike where v exceeds the threshold, then v_reset),
    fed NIR's IF input R I integrated over one step: ``r * dt * x``."""

    def __init__(self, node, dt_s: float) -> None:
        super().__init__()
        from norse.torch.functional.iaf import IAFParameters
        from norse.torch.module.iaf import IAFCell

        self.gain = _tensor(node.r) * dt_s
        self.cell = IAFCell(IAFParameters(v_th=_tensor(node.v_threshold), v_reset=_tensor(node.v_reset).clone()),
                            dt=dt_s)

    def forward(self, x, state=None):
        return self.cell(self.gain * x, state)


class _Threshold(torch.nn.Module):
    """NIR's Threshold: a spike where the input exceeds the threshold (stateless)."""

    def __init__(self, node) -> None:
        super().__init__()
        self.threshold = _tensor(node.threshold)

    def forward(self, x):
        return (x > self.threshold).float()


def _node_builders(dt_s: float) -> dict:
    """NIR node type -> the function that builds its Norse/torch module (exact types: a subclass is not mapped)."""
    import nir

    def conv(node):
        module = torch.nn.Conv2d(node.weight.shape[1], node.weight.shape[0], node.weight.shape[-2:],
                                 stride=node.stride, padding=node.padding, dilation=node.dilation, groups=node.groups)
        module.weight.data = _tensor(node.weight)
        module.bias.data = _tensor(node.bias)
        return module

    def linear(node):
        module = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0], bias=isinstance(node, nir.Affine))
        module.weight.data = _tensor(node.weight)
        if isinstance(node, nir.Affine):
            module.bias.data = _tensor(node.bias)
        return module

    def pool(node, kind):
        kernel, stride = tuple(int(k) for k in node.kernel_size), tuple(int(s) for s in node.stride)
        if kind == "sum":
            return torch.nn.LPPool2d(norm_type=1, kernel_size=kernel, stride=stride)  # Norse's own SumPool2d
        return torch.nn.AvgPool2d(kernel, stride)

    def flatten(node):
        # NIR shapes have no batch dimension; the torch module sees (batch, ...)
        return torch.nn.Flatten(node.start_dim + 1, node.end_dim if node.end_dim < 0 else node.end_dim + 1)

    return {
        nir.CubaLIF: lambda node: _CubaLIF(node, dt_s),
        nir.LIF: lambda node: _LIF(node, dt_s),
        nir.IF: lambda node: _IF(node, dt_s),
        nir.Threshold: _Threshold,
        nir.Conv2d: conv,
        nir.Linear: linear,
        nir.Affine: linear,
        nir.SumPool2d: lambda node: pool(node, "sum"),
        nir.AvgPool2d: lambda node: pool(node, "avg"),
        nir.Flatten: flatten,
    }


def norse_executor(graph, dt_s: float):
    """The graph as a Norse/nirtorch module, checking that every computational node was mapped."""
    import nirtorch
    from nirtorch.utils import sanitize_name

    builders = _node_builders(dt_s)
    for name, node in graph.nodes.items():  # before nirtorch, which fails on an unmapped node inside itself
        if type(node).__name__ not in ("Input", "Output") and type(node) not in builders:
            raise NorseError(f"node '{name}' ({type(node).__name__}) has no Norse module")

    def model_map(node):
        build = builders.get(type(node))
        return build(node) if build is not None else None

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            executor = nirtorch.load(graph, model_map)
    except (KeyError, ValueError, TypeError, RuntimeError, AttributeError) as exc:
        raise NorseError(f"nirtorch could not load the graph for Norse: {type(exc).__name__}: {exc}") from None
    mapped = {name for name, _ in executor.named_children()}
    for name, node in graph.nodes.items():
        if type(node).__name__ in ("Input", "Output"):
            continue
        if sanitize_name(name) not in mapped:
            raise NorseError(f"node '{name}' ({type(node).__name__}) has no Norse module")
    return executor


def norse_step_plan(graph, net):
    """hwnas' step plan (:class:`~hwnas.sim.graph.StepPlan`) of what Norse's executor computes for ``graph``
    (``net`` loaded from it): populations in the executor's order, and each connection delayed by the steps its
    chain of NIR nodes loses where a node runs before the node that feeds it, delivering nothing at the first
    step (where the executor has no earlier output). A chain delayed by more than one step (no hwnas connection
    delays so) is a :class:`NorseError`."""
    from nirtorch.utils import sanitize_name

    from ..sim.graph import StepPlan

    if not net.nir_chains:
        raise NorseError("Norse's step order needs the network read from the graph (hwnas.formats.nir.load)")
    executor = norse_executor(graph, 1e-3)  # the order does not depend on the time step
    position = {node.name: number for number, node in enumerate(executor.execution_order)}
    delayed = []
    for conn in net.active_connections():
        chain = [sanitize_name(name) for name in net.nir_chains[conn.module_key]]
        steps = sum(position[b] <= position[a] for a, b in zip(chain, chain[1:]))
        if steps > 1:
            raise NorseError(f"Norse delays the connection {conn.src} -> {conn.dst} by {steps} steps, which hwnas' "
                             "simulator cannot follow")
        delayed.append((conn, steps == 1))
    order = sorted(net.order, key=lambda name: position[sanitize_name(name)])
    # a connection node that runs after the neuron it feeds has no output yet at the first step: Norse adds
    # nothing there, not even the node's bias
    return StepPlan.with_delays(order, delayed, "zero-delay", silent_first_step=True)


def run_norse(graph, inputs: torch.Tensor, dt_s: float, populations: list[str], readout_source: str,
              extra_steps: int = 0) -> dict:
    """Run ``inputs`` (T, B, ...) for T + ``extra_steps`` steps; spikes (steps, B, N) of the named populations
    and the summed current into the readout population (``readout_source`` is the node feeding it)."""
    from nirtorch.utils import sanitize_name

    executor = norse_executor(graph, dt_s)
    state = None
    spikes = {name: [] for name in populations}
    logits = None
    steps = inputs.shape[0] + extra_steps
    logging.getLogger().setLevel(logging.ERROR)  # nirtorch logs a line per step for graphs with several outputs
    with torch.no_grad():
        for t in range(steps):
            x = inputs[t] if t < inputs.shape[0] else torch.zeros_like(inputs[0])
            try:
                _, state = executor(x, state)
            except (ValueError, RuntimeError) as exc:
                raise NorseError(f"Norse could not run the graph at step {t}: {exc}") from None
            for name in populations:
                spikes[name].append(state.cache[sanitize_name(name)].reshape(x.shape[0], -1).clone())
            current = state.cache[sanitize_name(readout_source)]
            logits = current.clone() if logits is None else logits + current
    return {"codes": {name: torch.stack(values) for name, values in spikes.items()},
            "logits": logits / inputs.shape[0]}
