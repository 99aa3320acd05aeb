"""hwnas' bit-exact integer simulator: Loihi fixed-point arithmetic in pipelined time, on a lowered network.

It computes what Lava's bit-accurate models compute (``PyLifModelBitAcc`` / ``PyLifResetModelBitAcc``,
``PyDenseModelBitAcc``, ``PySparseModelBitAcc``, ``PyConvModelFixed``), vectorised over a batch:

* a connection sums the mantissas of the spikes it received one step earlier and shifts the sum by its
  exponent (arithmetic shift: a negative sum rounds towards minus infinity);
* ``u = trunc(u * (4096 - du - 1) / 4096) + (a << 6)``, wrapped to 24 bits; ``trunc`` rounds towards zero;
* ``v = clip(trunc(v * (4096 - dv) / 4096) + u + (bias << 6), +-(2^23 - 1))``;
* spike where ``v > vth << 6``, then ``v = 0`` there.

One sample runs ``steps + latency`` steps from a zero state, as the simulator does; the order of updates and
the delay of every connection come from the same :class:`~hwnas.sim.graph.StepPlan`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OptionError
from .graph import INPUT
from .lowering import LoweredNetwork
from .neuron import DECAY_UNITY, STATE_LIMIT, STATE_SHIFT


@dataclass
class Rasters:
    """What a backend measured: per population, spikes (samples, steps, neurons) in hwnas' flat order; the output
    population's input current summed over the steps (samples, classes), in float units; active neuron updates per
    population and step summed over samples (None where the backend cannot observe them)."""

    spikes: dict[str, np.ndarray]
    output_current: np.ndarray | None
    active_updates: dict[str, np.ndarray] | None = None

    def as_codes(self) -> dict:
        """Spikes as float tensors (steps, samples, neurons), the layout of the simulator's recorded codes."""
        import torch

        return {name: torch.from_numpy(r.transpose(1, 0, 2).astype(np.float32)) for name, r in self.spikes.items()}


def _trunc_decay(state: np.ndarray, keep: int) -> np.ndarray:
    """``sign(x) * (|x * keep| >> 12)``: Loihi's decay, rounding towards zero."""
    product = state * keep
    return np.sign(product) * (np.abs(product) >> 12)


def _shift(values: np.ndarray, exponent: int) -> np.ndarray:
    return values << exponent if exponent > 0 else values >> -exponent


def check_binary(inputs: np.ndarray) -> np.ndarray:
    """Fixed-point runs take spike inputs (0/1); graded inputs need the float mode."""
    if not np.isin(inputs, (0, 1)).all():
        raise OptionError("fixed-point runs take spike inputs (0/1): run graded (direct-encoded) input with --float")
    return inputs.astype(np.int64)


def simulate_fixed(lowered: LoweredNetwork, inputs: np.ndarray, timing: str = "pipelined") -> Rasters:
    """Run ``inputs`` (T, B, *input_shape) of 0/1 spikes through ``lowered`` in Loihi integer arithmetic.

    ``pipelined`` (the chip's timing, T + latency steps): every connection delivers the spikes of the step
    before. ``zero-delay`` (T steps): forward connections deliver the same step's spikes (populations are in
    topological order), backward ones the step before; that is what a layer-by-layer staggered reset makes a
    pipelined chain compute (netx).
    """
    plan = lowered.plan(timing)
    spikes_in = check_binary(np.asarray(inputs)).reshape(inputs.shape[0], inputs.shape[1], -1)
    steps_in, batch = spikes_in.shape[:2]
    total = steps_in + plan.latency_steps
    pops = lowered.populations
    params = {name: pops[name].fixed() for name in plan.order}
    matrices = {id(c): c.as_matrix(lowered.shape_of(c.src), integer=True).astype(np.int64).T.tocsr()
                for c in lowered.connections}
    incoming = {name: [(c, matrices[id(c)], delayed) for c, delayed in plan.incoming[name]] for name in plan.order}
    u = {name: np.zeros((batch, pop.neurons), np.int64) for name, pop in pops.items()}
    v = {name: np.zeros((batch, pop.neurons), np.int64) for name, pop in pops.items()}
    previous = {name: np.zeros((batch, pop.neurons), np.int64) for name, pop in pops.items()}
    previous[INPUT] = np.zeros((batch, spikes_in.shape[2]), np.int64)
    spikes = {name: np.zeros((batch, total, pop.neurons), bool) for name, pop in pops.items()}
    active = {name: np.zeros(total) for name in pops}
    output_current = np.zeros((batch, pops[lowered.output].neurons), np.int64)
    for t in range(total):
        current = {name: np.zeros((batch, pop.neurons), np.int64) for name, pop in pops.items()}
        now = {INPUT: spikes_in[t] if t < steps_in else np.zeros_like(previous[INPUT])}
        for name, p in params.items():
            for conn, matrix, delayed in incoming[name]:
                source = previous[conn.src] if delayed else now[conn.src]
                current[name] += _shift(np.asarray(source @ matrix), conn.exponent)
            uu = _trunc_decay(u[name], DECAY_UNITY - p["du"] - 1) + (current[name] << STATE_SHIFT)
            wrapped = np.where(uu > STATE_LIMIT, uu - 2 * STATE_LIMIT, uu)
            uu = np.where(wrapped <= -STATE_LIMIT, uu + 2 * STATE_LIMIT, wrapped)
            vv = _trunc_decay(v[name], DECAY_UNITY - p["dv"]) + uu + (p["bias_mant"] << p["bias_exp"])
            vv = np.clip(vv, -STATE_LIMIT + 1, STATE_LIMIT - 1)
            fired = vv > (p["vth"] << STATE_SHIFT)
            touched = (vv != 0) | ((uu != 0) if pops[name].du != 1.0 else False)
            active[name][t] = float(touched.sum())
            vv[fired] = 0
            u[name], v[name] = uu, vv
            spikes[name][:, t] = fired
            now[name] = fired.astype(np.int64)
        output_current += current[lowered.output]
        previous = now
    return Rasters(spikes, output_current / lowered.weight_format.scale, active)
