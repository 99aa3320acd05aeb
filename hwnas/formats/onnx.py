"""The network unrolled over time as an ONNX graph: input (T, batch, C, H, W) -> output spike counts and logits.

Neuron state (synaptic current u, membrane v) is an explicit tensor carried from one unrolled step to the next;
the order and delays come from the network's :class:`~hwnas.sim.graph.StepPlan`, as in the simulator, and so does
the arithmetic (a network fine-tuned in Loihi's fixed point computes it in ONNX too). ONNX has
no notion of time, so the number of steps is fixed at export (the architecture's timesteps plus the pipeline
latency).
"""

from __future__ import annotations

import inspect
import io
from pathlib import Path

import torch

from ..errors import HwnasError, first_line
from ..io_utils import write_bytes_atomic
from ..sim.graph import INPUT
from ..sim.network import SpikingNetwork
from ..sim.quantize import WEIGHT_SCALE
from ..sim.neuron import initial_state, lif_step, loihi_lif_step

OPSET = 17


class OnnxError(HwnasError):
    """The network cannot be exported to or checked as ONNX."""


class Unrolled(torch.nn.Module):
    """A trace-friendly copy of the simulation loop (no counters, no skipped steps: a static graph)."""

    def __init__(self, net: SpikingNetwork, timing: str | None = None) -> None:
        super().__init__()
        self.net = net
        self.timing = timing or net.timing

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.net
        plan = net.plan(self.timing)
        steps_in = inputs.shape[0]
        incoming = {name: [(net.synapses[c.module_key], c.src, delayed, c.module_key)
                           for c, delayed in plan.incoming[name]] for name in plan.order}
        loihi = net.arithmetic == "loihi"
        chip = net.chip_terms(inputs) if loihi else {}  # Loihi's arithmetic as the simulator computes it
        step = loihi_lif_step if loihi else lif_step
        zeros_in = torch.zeros_like(inputs[0])
        previous = {INPUT: zeros_in}
        state = {}
        for name, pop in net.populations.items():
            blank = torch.zeros((inputs.shape[1], *pop.shape), dtype=inputs.dtype)
            previous[name], state[name] = blank, initial_state(blank.double() if loihi else blank)
        logits = torch.zeros((inputs.shape[1], net.populations[net.output].neurons))
        counts = torch.zeros_like(logits)
        for t in range(steps_in + plan.latency_steps):
            now = {INPUT: inputs[t] if t < steps_in else zeros_in}
            for name in plan.order:
                current = torch.zeros_like(previous[name])
                for synapse, src, delayed, key in incoming[name]:
                    contribution = synapse(previous[src] if delayed else now[src])
                    current = current + (_chip_shift(contribution, *chip[key]) if key in chip else contribution)
                now[name], state[name] = step(current, state[name], net.populations[name].params)
                if name == net.output:
                    logits = logits + current
                    counts = counts + now[name]
            previous = now
        return counts, logits / steps_in


def _chip_shift(current: torch.Tensor, exponent: int, bias: torch.Tensor | None) -> torch.Tensor:
    """:func:`hwnas.sim.network.chip_current` in the fewest operations, for the unrolled graph (the ONNX exporter's
    time grows faster than the graph): its float32 sums of quantised weights are exact, so the chip's shift of
    the mantissa sum is one floor of 64 times the current (nothing for a non-negative exponent)."""
    if exponent >= 0:
        return current
    weighted = current if bias is None else current - bias
    shifted = torch.floor(weighted * WEIGHT_SCALE) / WEIGHT_SCALE
    return shifted if bias is None else shifted + bias


def export_onnx(net: SpikingNetwork, path: str | Path, timesteps: int, batch: int = 1) -> None:
    """Write the network unrolled over ``timesteps`` input steps (plus its latency) and check it with onnx."""
    import onnx

    net = net.eval()
    example = torch.zeros((timesteps, batch, *net.input_shape))
    buffer = io.BytesIO()
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer warns that the unrolled loop is fixed: that is the point
        # the TorchScript exporter, which torch 2.3 has and newer torch keeps behind dynamo=False (its default
        # dynamo exporter needs onnxscript)
        legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        torch.onnx.export(Unrolled(net), (example,), buffer, opset_version=OPSET, input_names=["spikes_in"],
                          output_names=["spike_counts", "logits"],
                          dynamic_axes={"spikes_in": {1: "batch"}, "spike_counts": {0: "batch"}, "logits": {0: "batch"}},
                          **legacy)
    model = onnx.load_from_string(buffer.getvalue())
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise OnnxError(f"the exported ONNX model does not pass onnx.checker: {first_line(exc)}") from None
    write_bytes_atomic(path, buffer.getvalue())


def run_onnx(path: str | Path, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluate an exported model with ONNX's reference evaluator: (spike counts, logits)."""
    import numpy as np
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(path))
    counts, logits = evaluator.run(None, {"spikes_in": inputs.numpy().astype(np.float32)})
    return torch.from_numpy(np.asarray(counts)), torch.from_numpy(np.asarray(logits))


def matches_hwnas(path: str | Path, net: SpikingNetwork, timesteps: int) -> bool:
    """Whether an exported model's output spike counts under ONNX's reference evaluator equal hwnas' on a random
    spike batch (4 samples, seeded)."""
    sample = torch.bernoulli(torch.full((timesteps, 4, *net.input_shape), 0.3),
                             generator=torch.Generator().manual_seed(0))
    counts, _ = run_onnx(path, sample)
    with torch.no_grad():
        expected = net(sample.to(next(net.parameters(), torch.empty(0)).device)).output_spikes.cpu()
    return bool(torch.equal(counts, expected))
