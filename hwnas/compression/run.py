"""``hwnas compress``: joint pruning, mixed precision and timestep search of a trained network (LitE-SNN's
spatial and temporal compression, Liu et al., IJCAI 2024), carried onto the chip.

Phases:

1. **Search** (``epochs``, float arithmetic): every weighted connection's weight is a
   :class:`~hwnas.compression.compconv.CompressedWeight` (learnt mask and precision), and the number of timesteps is
   a softmax over T = ``min_timesteps``..T_max (the trained T) (:mod:`hwnas.compression.timesteps`). A batch runs
   the network at every candidate T, each on the input encoded for T steps, and minimises

       sum_T psi_T (CE_T + synops_weight * BitSynOps_T / BitSynOps_0) + size_weight * Size / Size_0

   (Size and BitSynOps: :mod:`hwnas.compression.costs`; the subscript 0: the trained network, 8 bits, dense, T_max),
   with Adam on the weights (``lr``) and on the mask thresholds, precision logits and timestep logits
   (``arch_lr``). LitE-SNN's code weighs the same three terms (cross-entropy averaged over the candidate
   timesteps by their softmax, a model-size and a Bit-SynOps term with fixed coefficients); hwnas divides the
   costs by the trained network's, so the two weights the user sets are dimensionless.
2. **Decode**: each connection's precision (arg-max), its mask (``|W| > t``, pruned weights set to zero) and one
   T (arg-max of psi).
3. **Fine-tune** (``qat_epochs``): the decoded network in Loihi's fixed-point arithmetic at T, each connection in
   its own format, pruned weights held at zero; the best validation epoch is kept.

The result is a run folder of its own (default ``RUN/compressed``): ``architecture.json`` (with T),
``model.pt`` (per-connection bits and masks), ``train.json`` (its figures, as ``hwnas train`` writes them) and
``compress.json`` (bits and kept weights per connection, T, the figures before and after, history), so
``hwnas export`` and ``hwnas validate`` run on it unchanged.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from ..data.splits import DatasetSplits, encode_batch
from ..errors import OptionError
from ..io_utils import write_json_atomic
from ..limits import check_memory, check_run_options, check_seed, recorded_device, recorded_threads
from ..run_folder import RunFolder
from ..sim.quantize import MIN_WEIGHT_BITS, WeightFormat
from ..sim.seeding import computing_threads, resolve_device
from .compconv import attach, detach_decoded, keep_pruned_at_zero
from .costs import bit_synops, connection_events, measure_network, model_size_bits
from .timesteps import TimestepChoice

COMPRESS_REPORT = "compress.json"
DEFAULT_FOLDER = "compressed"


@dataclass(frozen=True)
class CompressConfig:
    """Options of a compression run (see the module docstring)."""

    epochs: int = 4               # joint search of masks, precisions and timesteps
    qat_epochs: int = 5           # fine-tuning of the decoded network in Loihi arithmetic (as hwnas train's)
    lr: float = 2e-4              # Adam on the weights (a tenth of training's)
    arch_lr: float = 1e-2         # Adam on thresholds, precision and timestep logits
    size_weight: float = 0.002    # weight of the model size, relative to the trained network's
    synops_weight: float = 0.002  # weight of the bit-weighted synaptic operations, relative to the trained network's
    bits: tuple[int, ...] | None = None  # candidate precisions; None: the target's weight_bit_choices from 2 bits
    min_timesteps: int = 1
    max_timesteps: int | None = None     # None: the trained network's timesteps
    batch_size: int = 64
    target: str | None = None     # None: the run's target
    seed: int | None = None       # None: the run's seed
    threads: int | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "qat_epochs"):
            if getattr(self, name) < 0:
                raise OptionError(f"--{name.replace('_', '-')} must be non-negative, got {getattr(self, name)}")
        for name in ("lr", "arch_lr"):
            if not 0 < getattr(self, name) < float("inf"):
                raise OptionError(f"--{name.replace('_', '-')} must be a finite positive number, got {getattr(self, name)}")
        for name in ("size_weight", "synops_weight"):
            if not 0 <= getattr(self, name) < float("inf"):
                raise OptionError(f"--{name.replace('_', '-')} must be a finite non-negative number, got "
                                  f"{getattr(self, name)}")
        if self.min_timesteps < 1:
            raise OptionError(f"--min-timesteps must be at least 1, got {self.min_timesteps}")
        if self.max_timesteps is not None and self.max_timesteps < self.min_timesteps:
            raise OptionError(f"--max-timesteps ({self.max_timesteps}) is below --min-timesteps ({self.min_timesteps})")
        if self.batch_size < 2:
            raise OptionError(f"--batch-size must be at least 2, got {self.batch_size}")
        check_run_options(self.seed, self.threads, self.device)


@dataclass
class CompressOutcome:
    """What compression produced: the compressed network, its architecture (with the chosen T) and the report
    (``compress.json``'s content)."""

    network: object
    architecture: object
    report: dict
    folder: Path


def chosen_bits(report: dict) -> list[int]:
    """The precisions a compression report's connections were given, each once, in increasing order."""
    return sorted({layer["bits"] for layer in report["layers"].values()})


def candidate_bits(config_bits, target) -> tuple[int, ...]:
    """The precisions compression chooses among: ``config_bits`` or the target's, each one the target supports
    and of at least 2 bits; a one-line :class:`OptionError` otherwise."""
    supported = tuple(target.weight_bit_choices)
    if not supported:
        raise OptionError(f"target '{target.name}' lists no weight_bit_choices: compression needs the precisions "
                          "its synapses support ([target] weight_bit_choices in the target file)")
    bits = tuple(sorted(set(config_bits))) if config_bits else tuple(b for b in supported if b >= MIN_WEIGHT_BITS)
    unsupported = [b for b in bits if b not in supported]
    if unsupported:
        raise OptionError(f"--bits {unsupported[0]}: target '{target.name}' stores weights in "
                          f"{', '.join(map(str, supported))} bits")
    if any(b < MIN_WEIGHT_BITS for b in bits):
        raise OptionError(f"--bits 1: mixed-sign weights need {MIN_WEIGHT_BITS} bits at least on Loihi (one bit is "
                          "the sign, so 1 bit holds only zero and one negative value)")
    if not bits:
        raise OptionError("--bits: no precision to choose from")
    return bits


def compress_run(run_dir: str | Path, config: CompressConfig, out_dir: str | Path | None = None,
                 progress: Callable[[str], None] | None = None, splits: DatasetSplits | None = None) -> CompressOutcome:
    """Compress the trained network of ``run_dir`` (its ``model.pt``) into ``out_dir`` (default
    ``run_dir/compressed``); ``splits`` supplies the data in memory (what the run was trained on) instead of
    loading the search's dataset."""
    from ..hw_models import load_target
    from ..training.model_file import load_model

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / DEFAULT_FOLDER
    if out.resolve() == run_dir.resolve():
        raise OptionError("--out must be another folder than the trained run (compression writes a run of its own)")
    source = RunFolder(run_dir)
    search_config = source.search_config()
    net, arch, checkpoint = load_model(source.model)
    if checkpoint.get("arithmetic") == "xylo":
        raise OptionError(f"{source.model} was trained for a Xylo core: compression (per-connection weight bits, "
                          "pruning, timesteps) is implemented for Loihi's fixed point only")
    if checkpoint.get("arithmetic") != "loihi" or not checkpoint.get("weight_bits"):
        raise OptionError(f"{source.model} was trained with float weights: compression starts from a network "
                          "trained in the chip's fixed point (hwnas train with --quantize)")
    target = load_target(config.target or search_config.get("target", "loihi2"))
    bits = candidate_bits(config.bits, target)
    max_t = config.max_timesteps or arch.timesteps
    if config.min_timesteps > max_t:
        raise OptionError(f"--min-timesteps ({config.min_timesteps}) exceeds the largest T, {max_t}")
    data_seed = check_seed(search_config.get("seed", 0), "the run's seed")  # the splits the network trained on
    seed = config.seed if config.seed is not None else data_seed  # batch order and encoding
    threads = config.threads or recorded_threads(search_config)
    device = resolve_device(config.device or recorded_device(search_config))
    if splits is not None and splits.kind == "frames" and config.min_timesteps != max_t:
        raise OptionError("event data handed over in memory is binned for one T: pass min_timesteps and "
                          "max_timesteps equal to it, or let compression load the run's dataset")
    data = _Data(search_config, data_seed, splits)
    with RunFolder(out).writing("compress"), computing_threads(threads):
        return _compress(net.to(device), arch, checkpoint, target, bits, range(config.min_timesteps, max_t + 1),
                         replace(config, seed=seed, threads=threads), data, source, RunFolder(out),
                         progress or (lambda message: None))


class _Data:
    """The run's dataset at each candidate T (static data: one load; event frames: binned again per T)."""

    def __init__(self, search_config: dict, seed: int, splits: DatasetSplits | None) -> None:
        self.config, self.seed, self.given, self.loaded = search_config, seed, splits, {}

    def at(self, timesteps: int) -> DatasetSplits:
        if self.given is not None:
            return self.given
        static = next((splits for splits in self.loaded.values() if splits.kind != "frames"), None)
        if static is not None:
            return static
        if timesteps not in self.loaded:
            from ..data import load_dataset

            splits = load_dataset(self.config.get("dataset", "digits"), self.config.get("data_dir"), timesteps,
                                  self.seed, self.config.get("max_samples"))
            other = next(iter(self.loaded.values()), None)
            if other is not None and not torch.equal(other.train_y, splits.train_y):
                raise OptionError("the dataset binned for another T holds other samples: compression needs the same "
                                  "split at every T")
            self.loaded[timesteps] = splits
        return self.loaded[timesteps]


def _compress(net, arch, checkpoint: dict, target, bits: tuple[int, ...], timesteps: range, config: CompressConfig,
              data: _Data, source: RunFolder, out: RunFolder, say: Callable[[str], None]) -> CompressOutcome:
    started = time.perf_counter()
    seed = config.seed
    chip_format = WeightFormat(bits=checkpoint["weight_bits"])
    spiking_input = net.spiking_input
    full = data.at(arch.timesteps)
    source.check_data(full.summary())
    if full.kind == "frames" and len(timesteps) > 1:  # event data is held binned for every candidate T
        held = sum(t.element_size() * t.numel() for t in (full.train_x, full.val_x, full.test_x))
        check_memory(held * sum(timesteps) / arch.timesteps, f"holding the event data binned for T = "
                     f"{timesteps[0]}..{timesteps[-1]}", "raise --min-timesteps or lower the run's --max-samples")
    say(f"measuring the trained network ({arch.timesteps} timesteps, {chip_format.bits}-bit weights) ...")
    before, _ = measure_network(net, arch, full, target, seed)
    say(f"  test accuracy {100 * before['accuracy']:.2f}%, {before['model_bits']} model bits, "
        f"{before['bit_synops_per_sample']:.0f} bit-weighted synaptic ops per sample")

    # the costs' scale: the trained network's synaptic events (training split) and stored weights, in its bits
    from ..training.loop import evaluate, train_epochs

    dense_fanout = {conn.module_key: float(net.synapses[conn.module_key].fanout(net.shape_of(conn.src)).mean())
                    for conn in net.weighted_connections()}
    _, reference_activity = evaluate(net, full, "train", arch, seed)
    synops_0 = sum(connection_events(net, reference_activity, dense_fanout).values()) * chip_format.bits or 1.0
    size_0 = before["model_bits"] or 1.0

    # phase 1: the joint search, in float arithmetic
    net.set_arithmetic("float", spiking_input=spiking_input)
    net.set_weight_format(None)
    attached = attach(net, bits)
    choice = TimestepChoice(timesteps).to(next(net.parameters()).device)
    arch_params = [p for q in attached.values() for p in (q.threshold, q.bit_logits)] + [choice.logits]
    arch_ids = {id(p) for p in arch_params}
    weights = [p for p in net.parameters() if id(p) not in arch_ids]
    weight_opt = torch.optim.Adam(weights, lr=config.lr)
    arch_opt = torch.optim.Adam(arch_params, lr=config.arch_lr)
    history = []
    for epoch in range(1, config.epochs + 1):
        loss_sum, batches = _search_epoch(net, arch, data, timesteps, choice, attached, dense_fanout, size_0,
                                          synops_0, config, weight_opt, arch_opt, epoch)
        state = _search_state(attached, choice, net)
        history.append({"phase": "search", "epoch": epoch, "loss": loss_sum / max(batches, 1), **state})
        say(f"search epoch {epoch}/{config.epochs}: loss {loss_sum / max(batches, 1):.4f}, T {state['timesteps']} "
            f"(weight {state['timestep_weight']:.2f}), mean bits {state['mean_bits']:.2f}, weights kept "
            f"{100 * state['kept_share']:.1f}% ({time.perf_counter() - started:.0f} s)")

    # phase 2: decode
    chosen_t = choice.decoded()
    probabilities = {t: float(p) for t, p in zip(timesteps, choice.probabilities().detach().cpu())}
    layer_bits, masks = detach_decoded(net, attached)
    compressed_arch = replace(arch, timesteps=chosen_t)
    net.set_arithmetic("loihi", chip_format, spiking_input)
    net.set_layer_weight_formats({key: WeightFormat(bits=b) for key, b in layer_bits.items()})
    splits = data.at(chosen_t)
    kept = {key: (int(mask.sum()), int(mask.numel())) for key, mask in masks.items()}
    say(f"decoded: T {chosen_t}, bits {', '.join(f'{k} {b}' for k, b in layer_bits.items())}; weights kept "
        f"{sum(k for k, _ in kept.values())} of {sum(n for _, n in kept.values())}")

    # phase 3: fine-tune the decoded network in the chip's arithmetic, pruned weights held at zero
    val_accuracy, _ = evaluate(net, splits, "val", compressed_arch, seed)
    if config.qat_epochs:
        hooks = keep_pruned_at_zero(net, masks)
        try:
            val_accuracy, best = train_epochs(net, compressed_arch, splits, config.qat_epochs, config.lr,
                                              config.batch_size, seed, False, "qat", history, say, started)
        finally:
            for hook in hooks:
                hook.remove()
        net.load_state_dict(best)
    after, activity = measure_network(net, compressed_arch, splits, target, seed)
    report = {
        "source": str(source.path), "target": target.name, "config": asdict(config), "seed": seed,
        "candidate_bits": list(bits), "timestep_candidates": list(timesteps), "timesteps": chosen_t,
        "timestep_probabilities": probabilities, "weight_bits": chip_format.bits,
        "layers": {key: {"bits": layer_bits[key], "kept": kept[key][0], "weights": kept[key][1]} for key in layer_bits},
        "before": before, "after": after, "val_accuracy": val_accuracy, "history": history,
        "seconds": time.perf_counter() - started,
    }
    _write(out, net, compressed_arch, checkpoint, layer_bits, masks, report, splits, source, target, activity)
    say(f"compressed: test accuracy {100 * before['accuracy']:.2f}% -> {100 * after['accuracy']:.2f}%, model bits "
        f"{before['model_bits']} -> {after['model_bits']}, bit-weighted synaptic ops "
        f"{before['bit_synops_per_sample']:.0f} -> {after['bit_synops_per_sample']:.0f} per sample, T "
        f"{arch.timesteps} -> {chosen_t}")
    return CompressOutcome(net, compressed_arch, report, out.path)


def _original(net, key: str) -> torch.Tensor:
    return net.synapses[key].weight_module().parametrizations.weight.original


def _search_epoch(net, arch, data: _Data, timesteps: range, choice, attached: dict, dense_fanout: dict,
                  size_0: float, synops_0: float, config: CompressConfig, weight_opt, arch_opt,
                  epoch: int) -> tuple[float, int]:
    """One epoch of the joint search; returns the summed loss and the number of batches."""
    device = next(net.parameters()).device
    reference = data.at(timesteps[-1])
    count = reference.train_y.shape[0]
    order = torch.randperm(count, generator=torch.Generator().manual_seed(config.seed * 1000 + 700 + epoch))
    generator = torch.Generator().manual_seed(config.seed * 1000 + 800 + epoch)
    net.train()
    total, batches = 0.0, 0
    for start in range(0, count, config.batch_size):
        index = order[start:start + config.batch_size]
        if index.numel() < 2:
            continue
        labels = reference.train_y[index].to(device)
        weight_opt.zero_grad()
        arch_opt.zero_grad()
        loss_value = 0.0
        # each candidate T runs and is differentiated on its own (the graphs of all T would not fit together)
        for position, steps in enumerate(timesteps):
            splits = data.at(steps)
            batch = encode_batch(splits.train_x[index], splits.kind, steps, arch.encoding, generator).to(device)
            with parametrize.cached():  # each compressed weight computed once per forward, not once per step
                out = net(batch)
                keep = {key: q.mask(_original(net, key)).mean() for key, q in attached.items()}
                expected = {key: q.expected_bits() for key, q in attached.items()}
                events = connection_events(net, out.activity, dense_fanout)
                cost = bit_synops(events, keep, expected) / synops_0
                psi = choice.probabilities()[position]
                loss = psi * (F.cross_entropy(out.logits, labels) + config.synops_weight * cost)
            loss.backward()
            loss_value += float(loss)
        kept = {key: q.mask(_original(net, key)).sum() for key, q in attached.items()}
        size = model_size_bits(kept, {key: q.expected_bits() for key, q in attached.items()}) / size_0
        size_loss = config.size_weight * size
        size_loss.backward()
        weight_opt.step()
        arch_opt.step()
        total += loss_value + float(size_loss)
        batches += 1
    return total, batches


def _search_state(attached: dict, choice, net) -> dict:
    """The decoding the search would give now: T and its weight, mean bits and share of weights kept."""
    with torch.no_grad():
        chosen = [q.decoded_bits() for q in attached.values()]
        kept = sum(float(q.decoded_mask(_original(net, key)).sum()) for key, q in attached.items())
        total = sum(_original(net, key).numel() for key in attached)
        probabilities = choice.probabilities()
    return {"timesteps": choice.decoded(), "timestep_weight": float(probabilities.max()),
            "mean_bits": sum(chosen) / max(len(chosen), 1), "kept_share": kept / max(total, 1)}


def _write(out: RunFolder, net, arch, checkpoint: dict, layer_bits: dict, masks: dict, report: dict,
           splits: DatasetSplits, source: RunFolder, target, activity) -> None:
    """The compressed run folder: architecture, model (with per-connection bits and masks), the search report
    its later steps read (the source run's configuration and data), train.json and compress.json."""
    from ..training.model_file import MODEL_VERSION, train_report, write_model, write_train_report

    arch.save(out.architecture)
    write_model(out, {**checkpoint, "version": MODEL_VERSION, "architecture": arch.to_dict(),
                      "state_dict": net.state_dict(), "layer_weight_bits": dict(layer_bits), "masks": masks,
                      "compressed": True})
    search_report = source.search_report()
    write_json_atomic(out.report, {"config": {**search_report.get("config", {}), "target": target.name},
                                   "dataset": search_report.get("dataset", splits.summary()),
                                   "compressed_from": str(source.path)})
    after = report["after"]
    write_train_report(out, train_report(
        net, arch, splits, activity, target, seed=report["seed"], quantized=True, weight_bits=report["weight_bits"],
        layer_weight_bits=dict(layer_bits), compressed=True, val_accuracy=report["val_accuracy"],
        test_accuracy=after["accuracy"], seconds=report["seconds"],
        history=[h for h in report["history"] if "val_accuracy" in h]))
    write_json_atomic(out / COMPRESS_REPORT, report)
