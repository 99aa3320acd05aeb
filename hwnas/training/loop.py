"""Surrogate-gradient training (BPTT) of a searched architecture, then quantisation-aware fine-tuning.

Phases: (1) float training with batch-norm, Adam and a cosine learning-rate schedule, in the target's timing
model; (2) on targets with integer weights (``--quantize``, default for Loihi targets): batch-norm is folded into
the convolutions and training continues with weights and biases fake-quantised to the target's fixed-point
format (:mod:`hwnas.sim.quantize`) and the neurons in Loihi's fixed-point arithmetic (truncated decays, integer
threshold; straight-through gradients), so the trained network computes what the chip, hwnas' integer twin and
Lava's fixed-point models compute, spike for spike. The best
checkpoint of the last phase (by validation accuracy) is kept as ``model.pt`` in the run folder.

Readout: the output layer's synaptic current summed over all steps (a weighted sum of the last hidden layer's
spike counts, which a chip can compute) is the logit vector; a sample is correct when its label's logit is strictly
the largest (a tie, e.g. a silent output, is wrong).
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..arch.builder import build_network
from ..arch.footprint import check_network_memory
from ..metrics import encoded_input_is_binary
from ..arch.genotype import Architecture
from ..arch.imported import is_imported
from ..data import load_dataset
from ..data.splits import DatasetSplits, encode_batch, strictly_correct
from ..errors import OptionError
from ..hw_models import load_target
from ..limits import check_fraction, check_run_options, check_seed, recorded_device, recorded_threads
from ..run_folder import RunFolder
from ..sim.activity import ActivityStats
from ..sim.network import SpikingNetwork
from ..sim.quantize import WeightFormat
from ..sim.seeding import build_seeded, computing_threads, pick_device, resolve_device
from .model_file import checkpoint_of, train_report, write_model, write_train_report


@dataclass(frozen=True)
class TrainConfig:
    """Options of a training run."""

    epochs: int = 20
    qat_epochs: int = 5
    lr: float = 2e-3
    batch_size: int = 64
    quantize: bool | None = None  # None: on when the target has integer weights
    target: str | None = None     # None: the search's target
    seed: int | None = None       # None: the search's seed
    threads: int | None = None    # None: the search's thread count
    device: str | None = None     # None: the search's device option (auto: CUDA when present)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise OptionError(f"--epochs must be at least 1, got {self.epochs}")
        if self.qat_epochs < 0:
            raise OptionError(f"--qat-epochs must be non-negative, got {self.qat_epochs}")
        if not 0 < self.lr < float("inf"):
            raise OptionError(f"--lr must be a finite positive number, got {self.lr}")
        if self.batch_size < 1:
            raise OptionError(f"--batch-size must be positive, got {self.batch_size}")
        check_run_options(self.seed, self.threads, self.device)


@dataclass
class TrainOutcome:
    """What training produced."""

    network: SpikingNetwork
    architecture: Architecture
    report: dict


def load_run(run_dir: Path) -> tuple[Architecture, dict]:
    """The architecture of a search run folder and the search's configuration (empty if no report)."""
    folder = RunFolder(run_dir)
    return folder.load_architecture(), folder.search_config()


def evaluate(net: SpikingNetwork, splits: DatasetSplits, split: str, arch: Architecture, seed: int,
             batch_size: int = 256, per_sample: list | None = None) -> tuple[float, ActivityStats]:
    """Accuracy on a split (a sample counts when its label's logit is strictly the largest) and the activity of
    running it (eval mode, no gradients). ``per_sample``, a list, receives each batch's boolean tensor of which
    samples counted, in the split's order."""
    x, y = splits.split(split)
    device = next(net.parameters()).device
    generator = torch.Generator().manual_seed(seed + 7919)
    net.eval()
    net.weights_changed()  # training moved the weights since the fan-out was counted
    correct, activity = 0, None
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            batch = encode_batch(x[start:start + batch_size], splits.kind, arch.timesteps, arch.encoding, generator)
            out = net(batch.to(device))
            counted = strictly_correct(out.logits.cpu(), y[start:start + batch_size])
            correct += int(counted.sum())
            if per_sample is not None:
                per_sample.append(counted)
            activity = out.activity if activity is None else activity.merge(out.activity)
    return correct / max(x.shape[0], 1), activity


def train_epochs(net: SpikingNetwork, arch: Architecture, splits: DatasetSplits, epochs: int, lr: float,
                 batch_size: int, seed: int, schedule: bool = True, name: str = "float",
                 history: list | None = None, say: Callable[[str], None] | None = None,
                 started: float | None = None, optimizer: torch.optim.Optimizer | None = None,
                 first_epoch: int = 1, best_activity: dict | None = None) -> tuple[float, dict]:
    """Surrogate-gradient BPTT of ``net`` for ``epochs`` on the training split (Adam, cosine schedule over these
    epochs when ``schedule``); returns the best validation accuracy and the state dict that reached it.
    ``history`` collects one dict per epoch (phase, epoch, loss, val_accuracy). A continued training passes its
    ``optimizer`` and numbers its epochs from ``first_epoch`` (each epoch's data order depends on its number).
    ``best_activity``, a dict, receives under ``"activity"`` the validation activity of the best epoch (what
    evaluating its state again would measure) and under ``"correct"`` which validation samples it classified."""
    device = next(net.parameters()).device
    say = say or (lambda message: None)
    started = time.perf_counter() if started is None else started
    history = [] if history is None else history
    optimizer = optimizer or torch.optim.Adam(net.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs) if schedule else None
    net.pool_batchnorm_steps()  # train as the network is evaluated and deployed (hwnas.sim.batchnorm)
    x, y = splits.split("train")
    best = (-1.0, None)
    for epoch in range(first_epoch, first_epoch + epochs):
        net.train()
        generator = torch.Generator().manual_seed(seed * 1000 + epoch + (500 if name == "qat" else 0))
        order = torch.randperm(x.shape[0], generator=generator)
        total_loss, batches = 0.0, 0
        for start in range(0, x.shape[0], batch_size):
            index = order[start:start + batch_size]
            if index.numel() < 2:
                continue  # batch-norm needs two samples
            batch = encode_batch(x[index], splits.kind, arch.timesteps, arch.encoding, generator).to(device)
            loss = F.cross_entropy(net(batch).logits, y[index].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
            batches += 1
        if scheduler:
            scheduler.step()
        counted = [] if best_activity is not None else None
        accuracy, activity = evaluate(net, splits, "val", arch, seed, per_sample=counted)
        history.append({"phase": name, "epoch": epoch, "loss": total_loss / max(batches, 1), "val_accuracy": accuracy})
        say(f"{name} epoch {epoch}/{epochs}: loss {total_loss / max(batches, 1):.4f}, "
            f"validation accuracy {100 * accuracy:.2f}% ({time.perf_counter() - started:.0f} s)")
        if accuracy > best[0]:
            best = (accuracy, {k: v.detach().clone() for k, v in net.state_dict().items()})
            if best_activity is not None:
                best_activity["activity"] = activity
                best_activity["correct"] = torch.cat(counted) if counted else None
    return best


SHORT_TRAINING_BATCH = 64  # samples per batch of the search's short trainings
SHORT_TRAINING_LR = 2e-3


@dataclass
class ShortTraining:
    """What :func:`short_training` measured: accuracy, activity and which samples it classified (a boolean
    tensor, the split's order) on the evaluated split at the best epoch, and (when kept) the state a later, longer
    training continues from."""

    accuracy: float
    activity: ActivityStats
    state: bytes | None = None
    correct: torch.Tensor | None = None


def short_training(arch: Architecture, splits, epochs: int, seed: int, split: str = "val", device=None,
                   fraction: float = 1.0, previous: bytes | None = None, keep: bool = False,
                   best_from_here: bool = False) -> ShortTraining:
    """The one entry of the search's trainings (screening, halving rungs) and of proxy-check's: ``epochs`` of
    ``hwnas train``'s float training from the weights ``seed`` gives, then the accuracy and activity on ``split``
    (``val`` or ``test``) of the epoch with the best validation accuracy.

    ``fraction`` below 1 trains on that share of the training split only (drawn with ``seed``): the screening
    sees a fraction of an epoch. ``keep`` returns the state (weights, Adam's moments, epochs, best epoch) that a
    later call continues from as ``previous``: ``epochs`` then counts all epochs, the first ones done before, and
    each call runs the cosine schedule over the epochs it adds (a warm restart, Loshchilov & Hutter, SGDR, ICLR
    2017), so a first call is exactly one without ``previous``. ``best_from_here`` chooses the best epoch among
    this call's epochs only: the previous state's best was measured on other validation samples (the search's last
    rung validates on the whole split, its earlier rungs on a subset)."""
    net = build_seeded(lambda: build_network(arch), seed, arch.key).to(device or pick_device())
    optimizer = torch.optim.Adam(net.parameters(), lr=SHORT_TRAINING_LR)
    done, best, best_activity = 0, (-1.0, None), {}
    if previous is not None:
        saved = torch.load(io.BytesIO(previous), map_location=next(net.parameters()).device, weights_only=True)
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])  # Adam's moments; its learning rate ended the last cosine at 0
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] = SHORT_TRAINING_LR  # the restart: the schedule starts over from here
        done = saved["epochs"]
        if not (best_from_here and epochs > done):
            best = (saved["best_accuracy"], saved["best_model"])
    if epochs > done:
        accuracy, state = train_epochs(net, arch, training_subset(splits, fraction, seed), epochs - done,
                                       SHORT_TRAINING_LR, SHORT_TRAINING_BATCH, seed, optimizer=optimizer,
                                       first_epoch=done + 1, best_activity=best_activity)
        if accuracy > best[0]:  # ties keep the earlier epoch, as within one training
            best = (accuracy, state)
        else:
            best_activity.clear()  # the best epoch is an earlier training's
    kept = None
    if keep:
        buffer = io.BytesIO()
        torch.save({"epochs": max(epochs, done), "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                    "best_accuracy": best[0], "best_model": best[1]}, buffer)
        kept = buffer.getvalue()
    if split == "val" and "activity" in best_activity:  # measured at the best epoch: no second validation pass
        return ShortTraining(best[0], best_activity["activity"], kept, best_activity["correct"])
    net.load_state_dict(best[1])
    counted = []
    accuracy, activity = evaluate(net, splits, split, arch, seed, per_sample=counted)
    return ShortTraining(accuracy, activity, kept, torch.cat(counted) if counted else None)


def training_subset(splits: DatasetSplits, fraction: float, seed: int) -> DatasetSplits:
    """``splits`` with its training split cut to ``ceil(fraction * size)`` samples (at least 2), drawn with
    ``seed``; the same splits when ``fraction`` is 1."""
    if check_fraction(fraction, "a training fraction") == 1:
        return splits
    x, y = splits.split("train")
    count = min(x.shape[0], max(2, math.ceil(fraction * x.shape[0])))
    index = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed + 104729))[:count]
    index = index.sort().values  # the epoch's own shuffle orders them
    return replace(splits, train_x=x[index], train_y=y[index])


def train_run(run_dir: str | Path, config: TrainConfig,
              progress: Callable[[str], None] | None = None, splits: DatasetSplits | None = None,
              architecture: Architecture | None = None, picked: dict | None = None) -> TrainOutcome:
    """Train the architecture of a search run folder; writes ``model.pt`` and ``train.json`` there. ``splits``
    supplies the data in memory (it must be what the search recorded) instead of loading the search's dataset.
    ``architecture`` trains another of the search's candidates (``--pick``: ``picked`` is its row, recorded in
    ``train.json``)."""
    run_dir = Path(run_dir)
    arch, search_config = load_run(run_dir)
    if is_imported(arch):
        raise OptionError(f"{run_dir} holds a network read from {arch.source}: train it again into a new folder "
                          f"with hwnas train NEW_DIR --from {arch.source}")
    arch = architecture or arch
    threads = config.threads or recorded_threads(search_config)
    device = config.device or recorded_device(search_config)
    resolve_device(device)  # a device this machine lacks is refused before the folder is held
    with RunFolder(run_dir).writing("train"), computing_threads(threads):
        return _train(run_dir, arch, search_config, replace(config, threads=threads, device=device), progress,
                      splits, picked)


def _train(run_dir: Path, arch: Architecture, search_config: dict, config: TrainConfig,
           progress: Callable[[str], None] | None, splits: DatasetSplits | None = None,
           picked: dict | None = None) -> TrainOutcome:
    """:func:`train_run` while this process holds the run folder."""
    target = load_target(config.target or search_config.get("target", "loihi2"))
    seed = config.seed if config.seed is not None else check_seed(search_config.get("seed", 0), "the search's seed")
    dense = getattr(arch, "input_channels", None) is not None  # a DenseArchitecture
    if dense and target.network != "dense":
        raise OptionError(f"{arch.key} is a network of dense populations for a Xylo core: train it for the target "
                          f"its search was made for (--target {search_config.get('target', 'xylo-audio3')}), not "
                          f"{target.name}")
    if target.network == "dense" and not dense:
        raise OptionError(f"{target.name} holds networks of dense populations and {arch.key} is not one: train it for "
                          "a Loihi target")
    arch = replace(arch, timing=target.timing)
    if splits is None:
        splits = load_dataset(search_config.get("dataset", "digits"), search_config.get("data_dir"), arch.timesteps,
                              seed, search_config.get("max_samples"))
    RunFolder(run_dir).check_data(splits.summary())
    if splits.input_shape != tuple(arch.input_shape):
        raise OptionError(f"architecture expects input {list(arch.input_shape)}, dataset has {list(splits.input_shape)}")
    quantize = quantizes(config, target)
    check_network_memory(arch, config.batch_size, True, f"training {arch.key} (width {arch.width}, "
                         f"{arch.timesteps} timesteps) with --batch-size {config.batch_size}", "lower --batch-size",
                         arithmetic="loihi" if quantize and config.qat_epochs else "float")  # xylo's: as loihi's
    device = resolve_device(config.device or "auto")
    torch.manual_seed(seed)
    net = build_seeded(lambda: build_network(arch), seed, arch.key).to(device)
    picked = None if picked is None else {"picked": {key: picked[key] for key in (
        "cell", "skeleton", "rank", "refine_epochs", "refine_accuracy", "refine_energy_j") if key in picked}}
    return train_network(run_dir, net, arch, splits, target, seed, quantize, config, progress, report_extra=picked)


def quantizes(config: TrainConfig, target) -> bool:
    """Whether the training ends in the target's fixed point (``--quantize``, default: when it has integer
    weights); a target with float weights cannot."""
    quantize = config.quantize if config.quantize is not None else target.weight_bits is not None
    if quantize and target.weight_bits is None:
        raise OptionError(f"--quantize needs a target with integer weights; '{target.name}' has float weights")
    return quantize


def train_network(run_dir: Path, net: SpikingNetwork, arch, splits: DatasetSplits, target, seed: int, quantize: bool,
                  config: TrainConfig, progress: Callable[[str], None] | None, extra: dict | None = None,
                  report_extra: dict | None = None) -> TrainOutcome:
    """The phases of a training of ``net`` (float, then, when ``quantize``, folded and fine-tuned in Loihi's
    fixed point); writes ``model.pt`` (with ``extra``'s entries) and ``train.json`` (with ``report_extra``'s)."""
    say = progress or (lambda message: None)
    device = next(net.parameters()).device
    started = time.perf_counter()
    history = []

    def run_phase(name: str, epochs: int, lr: float, schedule: bool) -> tuple[float, dict]:
        return train_epochs(net, arch, splits, epochs, lr, config.batch_size, seed, schedule, name, history, say,
                            started)

    best_accuracy, best_state = run_phase("float", config.epochs, config.lr, schedule=True)
    weight_format = None
    if quantize:
        net.load_state_dict(best_state)
        folds = any(synapse.has_batchnorm for synapse in net.synapses.values())
        net.fold_batchnorm()
        weight_format = WeightFormat(bits=target.weight_bits)
        if target.arithmetic == "xylo":
            net.set_arithmetic("xylo")
            chip = "Xylo's integer arithmetic"
        else:
            net.set_arithmetic("loihi", weight_format,
                               encoded_input_is_binary(splits.test_x, splits.kind, arch.encoding))
            chip = "Loihi's fixed-point arithmetic"
        accuracy, _ = evaluate(net, splits, "val", arch, seed)
        say(f"{'folded batch-norm, ' if folds else ''}quantised weights to {target.weight_bits} bits, now in {chip}: "
            f"validation accuracy {100 * accuracy:.2f}% before fine-tuning")
        if config.qat_epochs:
            best_accuracy, best_state = run_phase("qat", config.qat_epochs, config.lr / 10, schedule=False)
        else:
            best_accuracy, best_state = accuracy, {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    test_accuracy, activity = evaluate(net, splits, "test", arch, seed)
    seconds = time.perf_counter() - started
    write_model(RunFolder(run_dir), checkpoint_of(net, arch, weight_format.bits if weight_format else None,
                                                  **(extra or {})))
    report = train_report(net, arch, splits, activity, target, device=str(device), config=asdict(config), seed=seed,
                          quantized=bool(weight_format), weight_bits=weight_format.bits if weight_format else None,
                          val_accuracy=best_accuracy, test_accuracy=test_accuracy, seconds=seconds, history=history,
                          **(report_extra or {}))
    write_train_report(RunFolder(run_dir), report)
    return TrainOutcome(net, arch, report)
