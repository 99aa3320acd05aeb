"""Energy, latency and core use of a whole architecture on a target, measured on samples of a dataset."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..arch.builder import build_network
from ..arch.footprint import check_network_memory
from ..arch.genotype import Architecture
from ..data.splits import DatasetSplits, encode_batch
from ..errors import OptionError
from ..sim.activity import ActivityStats
from ..sim.seeding import build_seeded, pick_device
from .energy import Estimate, estimate_energy
from .mapping import Mapping, map_network
from .targets import Target


def simulate_activity(arch: Architecture, splits: DatasetSplits, samples: int, seed: int,
                      batch_size: int = 64, bn_mode: str = "batch") -> ActivityStats:
    """Activity of ``arch`` (weights as the search built them for ``seed``) on the first ``samples`` validation
    samples, in the architecture's timing model."""
    if tuple(arch.input_shape) != splits.input_shape or arch.num_classes != splits.num_classes:
        raise OptionError(f"architecture expects input {list(arch.input_shape)} and {arch.num_classes} classes, "
                          f"dataset {splits.name} has {list(splits.input_shape)} and {splits.num_classes}")
    x, _ = splits.split("val")
    x = x[:samples]
    if x.shape[0] == 0:
        raise OptionError(f"dataset {splits.name} has no validation samples")
    device = pick_device()
    net = build_seeded(lambda: build_network(arch), seed, arch.key).to(device)
    net.train(bn_mode == "batch")
    generator = torch.Generator().manual_seed(seed)
    activity = None
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            batch = encode_batch(x[start:start + batch_size], splits.kind, arch.timesteps, arch.encoding, generator)
            result = net(batch.to(device)).activity
            activity = result if activity is None else activity.merge(result)
    return activity


def encode_samples(splits: DatasetSplits, split: str, samples: int, timesteps: int, encoding: str,
                   seed: int) -> torch.Tensor:
    """The first ``samples`` of a split as network input (T, B, ...)."""
    x, _ = splits.split(split)
    if x.shape[0] == 0:
        raise OptionError(f"dataset {splits.name} has no {split} samples")
    return encode_batch(x[:samples], splits.kind, timesteps, encoding, torch.Generator().manual_seed(seed))


def estimate_network(net, target: Target, inputs: torch.Tensor) -> tuple[Estimate, Mapping]:
    """Run ``inputs`` (T, B, ...) through a built network (its weights as they are), map it onto ``target``'s
    cores and estimate energy and latency per inference."""
    if not target.is_hardware:
        raise OptionError(f"target '{target.name}' has no hardware model to estimate with")
    if tuple(inputs.shape[2:]) != tuple(net.input_shape):
        raise OptionError(f"the samples have shape {list(inputs.shape[2:])} per step, the network takes "
                          f"{list(net.input_shape)} (give the --dataset it was made for)")
    with torch.no_grad():
        activity = net(inputs, timing=target.timing).activity
    mapping = map_network(net, target)
    return estimate_energy(activity, mapping, target), mapping


def estimate_architecture(arch: Architecture, target: Target, splits: DatasetSplits, samples: int = 64,
                          seed: int = 0) -> tuple[Estimate, Mapping, Architecture]:
    """Simulate ``arch`` in ``target``'s timing model on ``samples`` validation samples, map it onto the
    target's cores and estimate energy and latency per inference."""
    if not target.is_hardware:
        raise OptionError(f"target '{target.name}' has no hardware model to estimate with")
    arch = replace(arch, timing=target.timing)
    check_network_memory(arch, samples, False, f"simulating {arch.key} on {samples} samples",
                         "lower --samples, or the architecture's width or timesteps")
    activity = simulate_activity(arch, splits, samples, seed)
    net = build_seeded(lambda: build_network(arch), seed, arch.key)
    mapping = map_network(net, target)
    return estimate_energy(activity, mapping, target), mapping, arch
