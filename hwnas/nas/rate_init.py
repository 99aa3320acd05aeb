"""Firing-rate-aware initialisation for training-free scoring.

A freshly initialised spiking network can sit in a regime that says little about the architecture: layers that
stay nearly silent or fire at every step make the spike codes of different samples alike, whatever the cell's
wiring. Calibration removes that nuisance before scoring: population by population, in the forward order, a
single gain on the population's summed input current is set by bisection so that the population fires at
``target_rate`` (spikes per neuron and step, over the steps its input reaches it) on the scoring batch. It is
the spiking counterpart of data-dependent initialisations such as LSUV (Mishkin & Matas, ICLR 2016), which
scale each layer to unit output variance.

Max-pool (OR) populations keep their exact semantics and are not calibrated. Feedback connections are
calibrated with the gains in force at their population's turn (one pass, not a fixed point).
"""

from __future__ import annotations

import math

import torch

from ..sim.network import SpikingNetwork
from ..sim.neuron import OR_NEURON

LOG2_GAIN_RANGE = (-8.0, 8.0)
BISECTION_STEPS = 9


@torch.no_grad()
def window_rates(net: SpikingNetwork, batch: torch.Tensor) -> dict[str, float]:
    """Firing rate per population over the input window (arrival step .. arrival step + T) of ``batch``."""
    output = net(batch, record=True)
    arrival = net.arrival_steps()
    steps = batch.shape[0]
    rates = {}
    for name, codes in output.codes.items():
        if math.isinf(arrival[name]):
            continue
        first = int(arrival[name])
        window = codes[first:first + steps]
        rates[name] = float(window.mean()) if window.numel() else 0.0
    return rates


@torch.no_grad()
def calibrate_firing(net: SpikingNetwork, batch: torch.Tensor, target_rate: float) -> dict[str, float]:
    """Set ``net.current_gain`` so each calibrated population fires near ``target_rate`` on ``batch``.

    Returns the rates reached, per population. Populations no input reaches, and OR (max-pool) populations,
    keep gain 1.
    """
    if not 0.0 < target_rate < 1.0:
        raise ValueError(f"target firing rate must lie in (0, 1), got {target_rate}")
    net.current_gain = {}
    arrival = net.arrival_steps()
    for name in net.order:
        if net.populations[name].params == OR_NEURON or math.isinf(arrival[name]):
            continue
        low, high = LOG2_GAIN_RANGE
        for _ in range(BISECTION_STEPS):
            middle = 0.5 * (low + high)
            net.current_gain[name] = 2.0 ** middle
            if window_rates(net, batch)[name] < target_rate:
                low = middle
            else:
                high = middle
        net.current_gain[name] = 2.0 ** (0.5 * (low + high))
    return window_rates(net, batch) if net.current_gain else {}
