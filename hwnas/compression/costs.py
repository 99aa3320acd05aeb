"""The cost terms of compression, and the figures a compressed network is reported with.

Model size: the bits of the weights a network stores, sum over weighted connections of kept weights x bits.
Bit-weighted synaptic operations (LitE-SNN's Bit-SynOps: synaptic operations, each weighted by the bits of the
weight it reads): sum over connections of the synaptic operations x bits. In training both are differentiable
estimates (:func:`model_size_bits`, :func:`bit_synops`): the kept weights through the mask's gradient, the
precision as the expected bits of the candidates, and a connection's synaptic operations as the spikes of its
source times the connection's fan-out before pruning times the share of weights kept (the authors' code
estimates them the same way, as firing rate x kept share x weights x bits); the reported figures are exact counts
(:func:`measure_network`).
"""

from __future__ import annotations

import torch

from ..sim.quantize import deployed_weight


def model_size_bits(kept: dict[str, torch.Tensor], bits: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over connections of kept weights x bits per weight (tensors, so gradients flow)."""
    return sum(kept[key] * bits[key] for key in kept)


def bit_synops(events: dict[str, float], keep_share: dict[str, torch.Tensor],
               bits: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over connections of (dense synaptic events x share of weights kept x bits per weight)."""
    return sum(events[key] * keep_share[key] * bits[key] for key in events)


def connection_events(net, activity, dense_fanout: dict[str, float]) -> dict[str, float]:
    """Per weighted connection, the synaptic events per sample it would carry with all weights kept: its
    source's spikes per sample (non-zero inputs for the input layer) times its mean fan-out before pruning."""
    sources = {conn.module_key: conn.src for conn in net.active_connections()}
    events = {}
    for key, fanout in dense_fanout.items():
        layer = activity.layers[sources[key]]
        events[key] = float(sum(layer.spikes)) / activity.samples * fanout
    return events


def stored_weights(net) -> dict[str, int]:
    """Per weighted connection, the non-zero weights it stores as deployed (a kernel's weights once)."""
    counts = {}
    for conn in net.weighted_connections():
        synapse = net.synapses[conn.module_key]
        deployed = deployed_weight(synapse.weight_module().weight, synapse.deployed_format(None))
        counts[conn.module_key] = int((deployed != 0).sum())
    return counts


def connection_bits(net) -> dict[str, int]:
    """Per weighted connection, the bits each of its weights is stored in (the network's format where the
    connection has none of its own; 32 for float weights)."""
    bits = {}
    for conn in net.weighted_connections():
        fmt = net.synapses[conn.module_key].deployed_format(net.chip_format)
        bits[conn.module_key] = fmt.bits if fmt is not None else 32
    return bits


def measure_network(net, arch, splits, target, seed: int, split: str = "test") -> tuple[dict, object]:
    """A network's figures on ``split``: accuracy, timesteps, model size in bits, synaptic and bit-weighted
    synaptic operations and spikes per sample, energy per inference and cores on ``target`` (its mapper and
    energy model), whether it fits; and the activity of the run."""
    from ..hw_models.energy import estimate_energy
    from ..hw_models.mapping import map_network
    from ..training.loop import evaluate

    bits = connection_bits(net)
    accuracy, activity = evaluate(net, splits, split, arch, seed)
    with net.synops_weighted_by(bits):
        _, weighted = evaluate(net, splits, split, arch, seed)
    totals = activity.totals_per_sample()
    stored = stored_weights(net)
    figures = {"accuracy": accuracy, "timesteps": arch.timesteps,
               "model_bits": int(sum(stored[key] * bits[key] for key in stored)), "weights": int(sum(stored.values())),
               "synops_per_sample": totals["synops"], "bit_synops_per_sample": weighted.totals_per_sample()["synops"],
               "spikes_per_sample": totals["spikes"]}
    if target.is_hardware:
        mapping = map_network(net, target)
        estimate = estimate_energy(activity, mapping, target)
        figures.update({"energy_j": estimate.energy_j, "cores": len(mapping.cores), "fits": mapping.feasible})
    return figures, activity
