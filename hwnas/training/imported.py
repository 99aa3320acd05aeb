"""``hwnas train DIR --from MODEL.nir``: train a network another tool wrote (snnTorch, Norse, sinabs, or hwnas
itself) as hwnas trains a searched one: float surrogate-gradient training from the graph's weights (or new ones,
``from_scratch``), then fine-tuning in Loihi's fixed-point arithmetic, so that the trained network equals Lava's
fixed-point models spike for spike. The run folder it writes is one every later step reads (``export``,
``validate``, ``estimate``, ``report``): ``architecture.json`` describes the imported network
(:class:`~hwnas.arch.imported.ImportedArchitecture`), ``report.json`` records the data and options, ``model.pt``
keeps the source graph beside the trained weights."""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..arch.choices import ENCODINGS
from ..arch.footprint import check_network_memory
from ..arch.imported import ImportedArchitecture
from ..data import load_dataset
from ..data.splits import DatasetSplits
from ..errors import LoweringError, OptionError, first_line
from ..formats.nir import read_graph, recorded_architecture, recorded_dt
from ..formats.trainable import graph_tensor, trainable_network
from ..hw_models import load_target
from ..hw_models.estimate import encode_samples, estimate_network
from ..io_utils import write_json_atomic
from ..limits import DEFAULT_THREADS
from ..run_folder import RunFolder
from ..sim.lowering import lower
from ..sim.quantize import WeightFormat
from ..sim.seeding import computing_threads, resolve_device
from .loop import TrainConfig, TrainOutcome, evaluate, quantizes, train_network

DEFAULT_TIMESTEPS = 8  # as a search's
ESTIMATE_SAMPLES = 64  # validation samples of the estimate of the graph as read (as hwnas estimate's default)


@dataclass(frozen=True)
class ImportOptions:
    """What training a graph needs besides :class:`~hwnas.training.loop.TrainConfig`: its data and its time units."""

    dataset: str = "digits"
    data_dir: str | None = None
    max_samples: int | None = None
    timesteps: int | None = None   # None: what the graph records (an hwnas export), else DEFAULT_TIMESTEPS
    encoding: str | None = None    # None: what the graph records, else rate
    dt: float | None = None        # seconds per step; None: the graph's hwnas.dt_s
    from_scratch: bool = False     # new weights (seeded) instead of the graph's

    def __post_init__(self) -> None:
        if self.timesteps is not None and (isinstance(self.timesteps, bool) or not isinstance(self.timesteps, int)
                                           or self.timesteps < 1):
            raise OptionError(f"--timesteps must be a positive integer, got {self.timesteps!r}")
        if self.encoding is not None and self.encoding not in ENCODINGS:
            raise OptionError(f"--encoding '{self.encoding}' is unknown (choose {', '.join(ENCODINGS)})")
        if self.dt is not None and not (isinstance(self.dt, (int, float)) and math.isfinite(self.dt) and self.dt > 0):
            raise OptionError(f"--dt must be a positive number of seconds, got {self.dt!r}")
        if self.max_samples is not None and (not isinstance(self.max_samples, int) or self.max_samples < 1):
            raise OptionError(f"--max-samples must be a positive integer, got {self.max_samples!r}")


def train_imported(source: str | Path, run_dir: str | Path, config: TrainConfig, options: ImportOptions,
                   progress: Callable[[str], None] | None = None,
                   splits: DatasetSplits | None = None) -> TrainOutcome:
    """Train the network of NIR file ``source`` into the new run folder ``run_dir`` (see the module docstring);
    ``splits`` supplies the data in memory instead of loading ``options.dataset``."""
    source, folder = Path(source), RunFolder(run_dir)
    if folder.path.exists() and not folder.path.is_dir():
        raise OptionError(f"{folder.path} is a file: give train --from a new folder")
    graph = read_graph(source)
    recorded = recorded_architecture(graph)
    dt_s = options.dt or recorded_dt(graph)
    if dt_s is None:
        raise OptionError(f"{source} records no time step: pass --dt, the seconds per step its time constants assume "
                          "(graphs in per-step units, as sinabs and snnTorch write them, need --dt 1)")
    if folder.model.exists() or (folder.architecture.exists() and "imported" not in folder.search_report()):
        # (an interrupted import, which wrote its description and no model, is started again)
        raise OptionError(f"{folder.path} already holds a run: give train --from a new folder")
    target = load_target(config.target or "loihi2")
    config = replace(config, target=target.name, seed=0 if config.seed is None else config.seed,
                     threads=config.threads or DEFAULT_THREADS, device=config.device or "auto")
    device = resolve_device(config.device)
    timesteps = options.timesteps or (recorded.timesteps if recorded else DEFAULT_TIMESTEPS)
    encoding = options.encoding or (recorded.encoding if recorded else "rate")
    quantize = quantizes(config, target)
    say = progress or (lambda message: None)
    with computing_threads(config.threads):
        net = trainable_network(graph, float(dt_s), target.timing)
        if splits is None:
            splits = load_dataset(options.dataset, options.data_dir, timesteps, config.seed, options.max_samples)
        arch = _described(source, net, splits, timesteps, float(dt_s), encoding, target.timing, options.from_scratch)
        if quantize:
            _check_deployable(net, source, WeightFormat(bits=target.weight_bits))
        check_network_memory(arch, config.batch_size, True, f"training {arch.key} ({arch.timesteps} timesteps) with "
                             f"--batch-size {config.batch_size}", "lower --batch-size or --timesteps",
                             arithmetic="loihi" if quantize and config.qat_epochs else "float", net=net)
        if options.from_scratch:
            _new_weights(net, config.seed)
        net = net.to(device)
        before = None
        if not options.from_scratch:
            before, _ = evaluate(net, splits, "val", arch, config.seed)
            say(f"{source.name} as read: validation accuracy {100 * before:.2f}% (float arithmetic, before training)")
        report = {"imported": {"source": str(source), "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
                               "val_accuracy_before": before},
                  "config": {**asdict(options), "dataset": splits.name, "seed": config.seed, "threads": config.threads,
                             "device": config.device, "target": target.name},
                  "dataset": splits.summary()}
        if target.is_hardware:  # the graph as read on the target, per layer (a search records its winner's so)
            inputs = encode_samples(splits, "val", ESTIMATE_SAMPLES, timesteps, encoding, config.seed).to(device)
            estimate, mapping = estimate_network(net, target, inputs)
            what = "the graph with new weights" if options.from_scratch else "the graph as read"
            report["estimate"] = {**estimate.to_dict(),
                                  "note": f"{what}, {estimate.samples} validation samples, per inference"}
            report["mapping"] = mapping.summary()
        with folder.writing("train"):
            arch.save(folder.architecture)
            write_json_atomic(folder.report, report)
            return train_network(folder.path, net, arch, splits, target, config.seed, quantize, config, progress,
                                 extra={"graph": graph_tensor(source)},
                                 report_extra={"imported": {"source": str(source), "val_accuracy_before": before}})


def _described(source: Path, net, splits: DatasetSplits, timesteps: int, dt_s: float, encoding: str, timing: str,
               from_scratch: bool) -> ImportedArchitecture:
    """The imported network's description, once its input and outputs are checked against the data."""
    if tuple(splits.input_shape) != tuple(net.input_shape):
        raise OptionError(f"{source} takes input {list(net.input_shape)}, dataset {splits.name} has "
                          f"{list(splits.input_shape)}")
    outputs = math.prod(net.populations[net.output].shape)
    if outputs != splits.num_classes:
        raise OptionError(f"{source} has {outputs} outputs (node '{net.output}'), dataset {splits.name} has "
                          f"{splits.num_classes} classes")
    return ImportedArchitecture(source=source.name, input_shape=tuple(net.input_shape), num_classes=outputs,
                                timesteps=timesteps, dt_s=dt_s, encoding=encoding, timing=timing,
                                from_scratch=from_scratch)


def _check_deployable(net, source: Path, fmt: WeightFormat) -> None:
    """Refuse, before any training, a network the chip's arithmetic cannot compute (one line naming why)."""
    inexact = [key for key, synapse in net.synapses.items() if not synapse.chip_exact()]
    if inexact:
        raise OptionError(f"{source}: connection {inexact[0]} keeps float weights, which Loihi's arithmetic cannot "
                          "train (pass --no-quantize for float training)")
    try:
        lower(net, fmt)
    except LoweringError as exc:
        raise OptionError(f"{source} cannot run on the chip: {first_line(exc)}") from None


def _new_weights(net, seed: int) -> None:
    """Draw every trainable weight anew (torch's default initialisation, seeded); biases the graph gave as zero
    stay zero."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                frozen = module.bias is not None and not module.bias.requires_grad
                module.reset_parameters()
                if frozen:
                    with torch.no_grad():
                        module.bias.zero_()
    finally:
        torch.random.set_rng_state(generator_state)
    net.weights_changed()
