"""hwnas from Python: search, train and export on data held in memory, results returned in memory.

    import hwnas
    found = hwnas.search(dataset, target="loihi2", timesteps=8)   # a torch Dataset, DataLoader, (x, y), a name
    trained = hwnas.train(found, epochs=20)                        # trained.model: an nn.Module returning logits
    hwnas.export(trained, "model.nir")                             # or format="onnx" / "netx"
    hwnas.validate(trained)                # Lava fixed/float, the integer twin and Norse compared; energy

The command line and these functions share their defaults (:class:`~hwnas.nas.config.SearchConfig`,
:class:`~hwnas.training.loop.TrainConfig`). A run folder is written only when ``out`` names one; otherwise the steps run in
a temporary folder that is removed afterwards. Data in memory is recorded by its name, shape, classes and split
sizes, and a later step on other data is refused, as on the command line.

Data: static images (N, C, H, W) with intensities in [0, 1] (torchvision with ``ToTensor()``), spike-encoded per
``encoding``; or event frames (N, T, C, H, W) of spike counts (tonic with ``ToFrame(n_time_bins=T)``), used as
they are (T must equal ``timesteps``). One dataset is split into train/validation/test with the seed; a dict
``{"train": ..., "test": ...}`` (optionally ``"val"``) keeps the given splits, holding out validation from train.
"""

from __future__ import annotations

import sys
import tempfile
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .arch.genotype import Architecture
from .data import load_dataset
from .data.splits import DatasetSplits, encode_batch, split_indices
from .errors import DataError, NirError, OptionError
from .io_utils import write_json_atomic
from .run_folder import RunFolder
from .sim.network import SpikingNetwork

DEFAULT_NAME = "in-memory"
VAL_FRACTION = 0.15
TEST_FRACTION = 0.15


class SpikingClassifier(nn.Module):
    """A trained hwnas network as a plain classifier: ``model(x)`` returns logits (B, classes).

    ``x`` is a batch as the data holds it: static images (B, C, H, W), encoded as in training (rate coding draws
    with ``seed``), or event frames (B, T, C, H, W); a static model also takes time-major network input
    (T, B, C, H, W). ``model.network`` is the :class:`~hwnas.sim.network.SpikingNetwork`, which takes time-major
    input and also returns spike counts and activity."""

    def __init__(self, network: SpikingNetwork, architecture: Architecture, kind: str = "static", seed: int = 0):
        super().__init__()
        self.network = network
        self.architecture = architecture
        self.kind = kind
        self.seed = seed

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        shape = tuple(self.architecture.input_shape)
        if x.dim() == 5 and tuple(x.shape[2:]) == shape and self.kind == "frames":
            x = encode_batch(x, "frames", x.shape[1], self.architecture.encoding)
        elif x.dim() == 4 and tuple(x.shape[1:]) == shape:
            x = encode_batch(x.cpu(), "static", self.architecture.timesteps, self.architecture.encoding,
                             torch.Generator().manual_seed(self.seed))
        device = next(self.network.parameters()).device
        return self.network(x.to(device)).logits


@dataclass
class SearchResult:
    """What :func:`search` found: the winner's architecture and row, every row, the report, the data it
    searched on (for :func:`train`) and the run folder (None when none was asked for)."""

    architecture: Architecture
    winner: dict
    rows: list[dict]
    report: dict
    splits: DatasetSplits
    folder: Path | None


@dataclass
class TrainResult:
    """What :func:`train` produced: the model, the training report and the run folder (or None)."""

    model: SpikingClassifier
    report: dict
    folder: Path | None
    splits: DatasetSplits | None = None


def _printer(progress) -> Callable | None:
    """A progress callback: the caller's, stderr lines for ``True``, none for ``False``."""
    if callable(progress):
        return progress
    return (lambda *parts: print(*[p for p in parts if p is not None], file=sys.stderr, flush=True)) if progress \
        else None


def _tensor(values) -> torch.Tensor:
    """A tensor of a tensor, an array or nested lists."""
    return values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))


def _tensors(data, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of a torch Dataset, a DataLoader, or an (x, y) pair of tensors or arrays."""
    from torch.utils.data import DataLoader

    if isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data[0], (tuple, list)):
        x, y = data
        return _tensor(x), _tensor(y)
    if isinstance(data, DataLoader):
        pairs = [(_tensor(x), _tensor(y)) for x, y in data]
        if not pairs:
            raise DataError(f"the {what} DataLoader yields no batch")
        return torch.cat([x for x, _ in pairs]), torch.cat([y.reshape(-1) for _, y in pairs])
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        if len(data) == 0:
            raise DataError(f"the {what} dataset is empty")
        xs, ys = [], []
        for index in range(len(data)):
            item = data[index]
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise DataError(f"item {index} of the {what} dataset is not a (sample, label) pair")
            sample = item[0]
            if not isinstance(sample, (torch.Tensor, np.ndarray)):
                raise DataError(f"item {index} of the {what} dataset is a {type(sample).__name__}, not an array: give "
                                "the dataset a transform that makes arrays (torchvision's ToTensor(), tonic's ToFrame)")
            xs.append(_tensor(sample))
            ys.append(int(item[1]))
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) != 1:
            raise DataError(f"the {what} dataset's samples have different shapes: {sorted(shapes)[:3]}")
        return torch.stack(xs), torch.tensor(ys, dtype=torch.long)
    raise DataError(f"cannot read {what} data of type {type(data).__name__}: give a dataset name, a torch Dataset, a "
                    "DataLoader, an (x, y) pair or a dict of such splits")


def _checked(x: torch.Tensor, y: torch.Tensor, timesteps: int, what: str) -> tuple[str, torch.Tensor, torch.Tensor]:
    """The data's kind and its tensors in the form :class:`DatasetSplits` holds, or a one-line error."""
    x, y = x.cpu(), y.cpu()  # data is encoded with the CPU's generator, as the command line does
    if x.shape[0] != y.reshape(-1).shape[0]:
        raise DataError(f"{what}: {x.shape[0]} samples but {y.reshape(-1).shape[0]} labels")
    y = y.reshape(-1).long()
    if x.dim() == 4:
        x = x.float()
        if not bool(torch.isfinite(x).all()):
            raise DataError(f"{what}: {int((~torch.isfinite(x)).sum())} image values are NaN or infinite")
        if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise DataError(f"{what}: static images must hold intensities in [0, 1], found [{float(x.min()):g}, "
                            f"{float(x.max()):g}] (divide by 255, or use torchvision's ToTensor())")
        return "static", x, y
    if x.dim() == 5:
        if x.shape[1] != timesteps:
            raise DataError(f"{what}: event frames have {x.shape[1]} time bins but timesteps={timesteps}: bin them to "
                            f"{timesteps} (tonic: ToFrame(n_time_bins={timesteps})) or pass timesteps={x.shape[1]}")
        counts = x.double()
        if not bool(torch.isfinite(counts).all()):
            raise DataError(f"{what}: {int((~torch.isfinite(counts)).sum())} frame values are NaN or infinite")
        if counts.numel() and (float(counts.min()) < 0 or float(counts.max()) > 255
                               or not torch.equal(counts, counts.round())):
            raise DataError(f"{what}: event frames must hold spike counts (integers 0..255)")
        return "frames", x.to(torch.uint8), y
    raise DataError(f"{what}: samples of shape {list(x.shape[1:])}; expected images (C, H, W) or event frames "
                    "(T, C, H, W)")


def as_splits(data, timesteps: int = 8, seed: int = 0, name: str | None = None, data_dir: str | None = None,
              num_classes: int | None = None, val_fraction: float = VAL_FRACTION,
              test_fraction: float = TEST_FRACTION, max_samples: int | None = None) -> DatasetSplits:
    """The :class:`DatasetSplits` of ``data``: a dataset name (loaded as the command line loads it), splits as
    they are, one dataset or (x, y) pair split with ``seed``, or a dict of ``train``/``test`` (and ``val``)."""
    if isinstance(data, str):
        return load_dataset(data, data_dir, timesteps, seed, max_samples)
    if isinstance(data, DatasetSplits):
        return data
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise OptionError(f"val_fraction and test_fraction must leave training samples, got {val_fraction} and "
                          f"{test_fraction}")
    if isinstance(data, dict):
        unknown = set(data) - {"train", "val", "test"}
        if unknown or "train" not in data or "test" not in data:
            raise OptionError(f"a dict of splits needs 'train' and 'test' (and may have 'val'), got {sorted(data)}")
        parts = {key: _checked(*_tensors(value, key), timesteps, f"the {key} split") for key, value in data.items()}
        kinds = {kind for kind, _, _ in parts.values()}
        if len(kinds) != 1 or len({tuple(x.shape[1:]) for _, x, _ in parts.values()}) != 1:
            raise DataError("the splits differ in kind or sample shape")
        kind = kinds.pop()
        train_x, train_y = parts["train"][1:]
        if "val" in parts:
            val_x, val_y = parts["val"][1:]
        else:
            keep, held, _ = split_indices(len(train_y), (val_fraction, 0.0), seed)
            train_x, train_y, val_x, val_y = train_x[keep], train_y[keep], train_x[held], train_y[held]
        test_x, test_y = parts["test"][1:]
    else:
        kind, x, y = _checked(*_tensors(data, "given"), timesteps, "the data")
        train, val, test = split_indices(len(y), (val_fraction, test_fraction), seed)
        train_x, train_y, val_x, val_y, test_x, test_y = x[train], y[train], x[val], y[val], x[test], y[test]
    labels = torch.cat([train_y, val_y, test_y])
    if labels.numel() == 0 or int(labels.min()) < 0:
        raise DataError("labels must be class indices 0, 1, 2, ...")
    classes = num_classes or int(labels.max()) + 1
    if int(labels.max()) >= classes:
        raise DataError(f"a label is {int(labels.max())} but num_classes is {classes}")
    if min(len(train_y), len(val_y), len(test_y)) == 0:
        raise DataError(f"too few samples to split: {len(train_y)} train, {len(val_y)} validation, {len(test_y)} test")
    if len(torch.unique(train_y)) < 2:
        raise DataError(f"the training split holds one class only (label {int(train_y[0])}): a classifier needs "
                        "samples of two or more classes")
    return DatasetSplits(name or DEFAULT_NAME, kind, train_x, train_y, val_x, val_y, test_x, test_y, classes)


def search(data: Any = "digits", target: str = "loihi2", *, out: str | Path | None = None, timesteps: int = 8,
           seed: int = 0, name: str | None = None, data_dir: str | None = None, num_classes: int | None = None,
           progress: bool | Callable = True, workers: int | None = None, ray_address: str | None = None,
           resume: bool = False, **options) -> SearchResult:
    """Search an architecture for ``target`` on ``data`` (see the module docstring); ``options`` are
    :class:`~hwnas.nas.config.SearchConfig` fields (``strategy``, ``candidates``, ``refine``, ``width``,
    ``device``, ``threads``, ...), with the command line's defaults. ``out`` keeps the run folder there;
    ``resume=True`` continues the interrupted search in ``out`` with its recorded options. ``progress``: a bar and
    the estimate of the search's time before it starts (True, the default), nothing (False), a callback ``(done,
    total, message)``, or a :class:`~hwnas.progress.ProgressBar` of the caller's. ``budget_minutes=M`` trains the
    screening and the rungs on the share of the training split that fits M minutes by that estimate
    (:mod:`hwnas.nas.budget`)."""
    from .nas.config import SearchConfig
    from .nas.runner import run_search
    from .progress import ProgressBar

    if resume:
        if out is None:
            raise OptionError("resume needs out=, the run folder of the search to continue")
        recorded = _checkpoint_config(RunFolder(out))
        # a named parameter given other than its default and the recorded value would be ignored: say so
        named = {"target": (target, "loihi2"), "timesteps": (timesteps, 8), "seed": (seed, 0),
                 "data_dir": (data_dir, None), "data": (data if isinstance(data, str) else None, "digits")}
        recorded_names = {"data": "dataset"}
        changed = [key for key, (value, default) in named.items()
                   if value is not None and value != default and value != recorded.get(recorded_names.get(key, key))]
        if options or changed:
            name_given = sorted(options)[0] if options else changed[0]
            raise OptionError(f"resume continues with the search's recorded options; {name_given}= cannot "
                              "change them")
        config, splits = SearchConfig(), None  # the checkpoint's options replace these
        if data is not None and not isinstance(data, str):  # data in memory: given again, read as it was recorded
            recorded = _recorded_data(RunFolder(out), checkpoint=True)
            splits = as_splits(data, recorded["timesteps"], recorded["seed"], name or recorded["name"],
                               num_classes=num_classes)
    else:
        if options.get("budget_minutes") is not None and options.get("train_fraction", 1.0) != 1.0:
            raise OptionError("give --budget-minutes (budget_minutes=) or --train-fraction (train_fraction=), not "
                              "both: the budget chooses the fraction")
        # a dataset by name is loaded by the search itself, after it has checked its options and its folder
        splits = None if isinstance(data, str) else as_splits(data, timesteps, seed, name, data_dir, num_classes,
                                                               max_samples=options.get("max_samples"))
        dataset = data if isinstance(data, str) else splits.name
        config = SearchConfig(target=target, dataset=dataset, data_dir=data_dir, timesteps=timesteps, seed=seed,
                              **options)
    bar = progress if isinstance(progress, ProgressBar) else ProgressBar(enabled=progress is True)
    update = bar.update if progress is True or isinstance(progress, ProgressBar) else progress or None
    with tempfile.TemporaryDirectory(prefix="hwnas-search-") as scratch:
        folder = Path(out) if out is not None else Path(scratch) / "run"
        try:
            outcome = run_search(config, folder, resume=resume, progress=update, splits=splits, workers=workers,
                                 ray_address=ray_address, notes=bar.note if bar.enabled else None)
        finally:
            bar.close()
        rows = [asdict(row) for row in outcome.rows]
        return SearchResult(outcome.architecture, asdict(outcome.winner), rows, outcome.report, outcome.splits,
                            Path(out) if out is not None else None)


def train(found: SearchResult | str | Path, *, out: str | Path | None = None, progress: bool | Callable = True,
          data: Any = None, pick: int | None = None, graph: bool | None = None, **options) -> TrainResult:
    """Train the winner of :func:`search` (or of a run folder), float then quantisation-aware on an integer
    target; ``options`` are :class:`~hwnas.training.loop.TrainConfig` fields (``epochs``, ``qat_epochs``, ``lr``,
    ``device``, ...). Trains in ``out`` when given, else in ``found``'s run folder when it has one, else in a
    temporary one.

    ``found`` may also be another tool's network: a ``.nir`` file or a ``nir.NIRGraph`` (``hwnas train --from``,
    :mod:`hwnas.training.imported`); ``data`` is then what to train on (a dataset name, with ``data_dir``, or data in
    memory as :func:`search` takes it), and ``options`` may add :class:`~hwnas.training.imported.ImportOptions` fields
    (``dt``, ``timesteps``, ``encoding``, ``from_scratch``, ``max_samples``).

    ``pick`` K trains point K (1: the cheapest) of the accuracy-energy front of the search's refined candidates
    instead of its winner (``hwnas train --pick``; the search needs its run folder). A folder ``--pick K --out NEW``
    made, trained again without ``pick``, trains its own architecture and still records that point as ``picked`` in
    ``train.json`` (the search's winner is no pick).

    ``out`` other than the search's own run folder trains in that new folder (``hwnas train RUN --out NEW``): the
    search's report and ``search.csv`` are copied there with the architecture trained, and the run folder keeps its
    own model (another seed, recipe or point of the front beside the first).

    ``graph``: whether ``found`` is another tool's graph (True: a NIR file of any name, as ``--from`` reads it;
    None: when it is a ``nir.NIRGraph`` or a ``.nir`` path)."""
    from .training.loop import TrainConfig, train_run

    if graph or (graph is None and _is_graph(found)):
        if pick is not None:
            raise OptionError("pick chooses among a search's candidates; it does not apply to another tool's graph")
        return _train_graph(found, out, progress, data, options)
    config = TrainConfig(**options)
    say = _printer(progress)
    architecture, picked = None, None
    source = found.folder if isinstance(found, SearchResult) else found
    if pick is not None:
        from .nas.front import picked_architecture

        if source is None:
            raise OptionError("pick needs the search's run folder (search.csv): search with out=")
        architecture, picked = picked_architecture(RunFolder(source), pick)
        if say:
            say(f"picked point {pick} of the front: {_point_text(picked)}")
    if source is not None:  # a run folder: the search's, or with out a new one beside it
        folder = RunFolder(source)
        if out is not None and Path(out).resolve() != folder.path.resolve():
            folder = folder.branch(out, architecture or folder.load_architecture())
        if pick is None:  # a folder --pick K --out branched, trained again: still that point of the front
            from .nas.front import recorded_pick

            picked = recorded_pick(folder, folder.load_architecture())
            if picked is not None and say:
                say(f"picked point of the front this folder was made for: {_point_text(picked)}")
        if isinstance(found, SearchResult):
            splits = found.splits
        else:
            splits = as_splits(data, **_recorded_data(folder)) if data is not None else None
        outcome = train_run(folder.path, config, say, splits, architecture, picked)
        return TrainResult(_classifier(outcome, splits, folder), outcome.report, folder.path, splits)
    with tempfile.TemporaryDirectory(prefix="hwnas-train-") as scratch:  # a search without a run folder
        folder = RunFolder(Path(out) if out is not None else Path(scratch) / "run")
        if out is not None and (folder.report.exists() or folder.model.exists()):
            raise OptionError(f"{folder.path} already holds a run: give train() a new out, or search with out=")
        found.architecture.save(folder.architecture)  # the search's files, for the training to read and check
        write_json_atomic(folder.report, found.report)
        outcome = train_run(folder.path, config, say, found.splits, architecture, picked)
        return TrainResult(_classifier(outcome, found.splits, folder),
                           outcome.report, folder.path if out is not None else None, found.splits)


def _point_text(row: dict) -> str:
    """A point of the refined front as the training announces it."""
    return (f"{row['cell']} ({row['skeleton']}), {100 * float(row['refine_accuracy']):.1f}% validation after "
            f"{row['refine_epochs']} epoch(s), {1e6 * float(row['refine_energy_j']):.1f} uJ")


def compress(trained: TrainResult | str | Path, *, out: str | Path | None = None, progress: bool | Callable = True,
             data: Any = None, **options) -> TrainResult:
    """Compress a trained network for its chip (LitE-SNN's joint pruning, mixed precision and timestep search,
    :mod:`hwnas.compression`), as ``hwnas compress`` does; ``options`` are :class:`~hwnas.compression.CompressConfig`
    fields (``epochs``, ``qat_epochs``, ``size_weight``, ``synops_weight``, ``bits``, ``min_timesteps``,
    ``max_timesteps``, ...). Writes a run folder of its own (``out``, default the trained run's ``compressed``)
    and returns it as a :class:`TrainResult` whose report is ``compress.json``'s."""
    from .compression import CompressConfig, compress_run

    path = trained.folder if isinstance(trained, TrainResult) else trained
    if path is None:
        raise OptionError("compress needs a trained run folder: train with out= (or from a search's folder)")
    folder = RunFolder(path)
    splits = trained.splits if isinstance(trained, TrainResult) and data is None else None
    if data is not None:
        splits = as_splits(data, **_recorded_data(folder))
    outcome = compress_run(folder.path, CompressConfig(**options), out, _printer(progress), splits)
    return TrainResult(_classifier(outcome, splits, RunFolder(outcome.folder)), outcome.report, outcome.folder, splits)


def _is_graph(found) -> bool:
    """True for a NIR graph object or a path to a ``.nir`` file."""
    if type(found).__name__ == "NIRGraph":
        return True
    return isinstance(found, (str, Path)) and Path(found).suffix == ".nir"


def _train_graph(found, out, progress, data, options: dict) -> TrainResult:
    """:func:`train` of another tool's network (see there)."""
    from dataclasses import fields

    from .training.imported import ImportOptions, train_imported
    from .training.loop import TrainConfig

    own = {field.name for field in fields(ImportOptions)} - {"dataset"}
    unknown = sorted(set(options) - own - {field.name for field in fields(TrainConfig)})
    if unknown:
        raise OptionError(f"train() got an unknown option '{unknown[0]}'")
    imported = ImportOptions(dataset=data if isinstance(data, str) else "digits",
                             **{key: value for key, value in options.items() if key in own})
    config = TrainConfig(**{key: value for key, value in options.items() if key not in own})
    splits = None
    if data is not None and not isinstance(data, str):
        splits = as_splits(data, imported.timesteps or 8, config.seed or 0)
    with tempfile.TemporaryDirectory(prefix="hwnas-train-") as scratch:
        source = found
        if not isinstance(found, (str, Path)):  # a graph in memory: written for the run folder's record
            import nir

            source = Path(scratch) / "graph.nir"
            nir.write(source, found)
        path = Path(out) if out is not None else Path(scratch) / "run"
        outcome = train_imported(source, path, config, imported, _printer(progress), splits)
        folder = RunFolder(path)
        return TrainResult(_classifier(outcome, splits, folder), outcome.report,
                           path if out is not None else None, splits)


def _recorded_data(folder: RunFolder, checkpoint: bool = False) -> dict:
    """The data options a run folder's search recorded (timesteps, seed, name), for reading data given again; from
    its checkpoint when the search has not finished (``checkpoint``)."""
    if checkpoint:
        config = _checkpoint_config(folder)
        name = config.get("dataset")
    else:
        config, name = folder.search_config(), folder.search_report().get("dataset", {}).get("name")
    return {"timesteps": int(config.get("timesteps", 8)), "seed": int(config.get("seed", 0)), "name": name}


def _checkpoint_config(folder: RunFolder) -> dict:
    """The options a run folder's search checkpoint recorded (empty when it has none)."""
    stored = folder.read_json(folder.checkpoint, {})
    config = stored.get("config") if isinstance(stored, dict) else None
    return config if isinstance(config, dict) else {}


def _classifier(outcome, splits: DatasetSplits | None, folder: RunFolder) -> SpikingClassifier:
    kind = splits.kind if splits is not None else folder.search_report().get("dataset", {}).get("kind", "static")
    return SpikingClassifier(outcome.network, outcome.architecture, kind, int(outcome.report.get("seed", 0)))


EXPORT_FORMATS = ("nir", "onnx", "netx")


@dataclass
class Exported:
    """What :func:`export_checked` wrote: the file, a one-line description of it and of its check, and whether the
    check agreed (None where the check could not run: netx without Lava)."""

    path: Path
    description: str
    agrees: bool | None


def _trained_model(trained) -> tuple[Any, Architecture]:
    """The network and architecture of a trained model: a :class:`TrainResult`, a :class:`SpikingClassifier`, or a
    :class:`RunFolder` (its ``model.pt``)."""
    from .training.model_file import load_model

    if isinstance(trained, RunFolder):
        net, arch, _ = load_model(trained.model)
        return net, arch
    model = trained.model if isinstance(trained, TrainResult) else trained
    if not isinstance(model, SpikingClassifier):
        raise OptionError(f"cannot export a {type(model).__name__}: give a TrainResult, a SpikingClassifier or a "
                          "trained run folder")
    return model.network, model.architecture


def export_checked(trained, path: str | Path | None = None, format: str = "nir", dt: float | None = None,
                   profile: str = "hwnas", lava: bool | None = None) -> Exported:
    """:func:`export`, returning what was written and what its check found instead of raising when the check
    disagrees (``hwnas export`` prints it and exits 1). ``lava``: whether a netx file must run in Lava (True: a
    one-line error without Lava, as on the command line), may (None) or not (False)."""
    from .formats.nir import DEFAULT_DT_S, export as export_nir, load, write
    from .formats.portable import PORTABLE_DT_S, to_portable_nir
    from .io_utils import check_writable
    from .metrics import deployed_network

    if format not in EXPORT_FORMATS:
        raise OptionError(f"unknown export format '{format}' (choose {', '.join(EXPORT_FORMATS)})")
    if profile not in ("hwnas", "portable"):
        raise OptionError(f"profile must be hwnas or portable, got {profile!r}")
    if profile != "hwnas" and format != "nir":
        raise OptionError(f"--profile applies to --format nir, not {format}")
    folder = RunFolder(trained) if isinstance(trained, (str, Path)) else None
    if path is None and folder is None:
        raise OptionError("export needs a path for a model held in memory")
    path = Path(path) if path is not None else folder.export(format)
    check_writable(path, "--out")
    net, arch = _trained_model(folder or trained)
    net = deployed_network(net)  # on the CPU; a model in memory is not moved
    if net.arithmetic == "xylo":  # a Xylo core's network: the NIR graph rockpool maps (hwnas.formats.xylo)
        if format != "nir" or profile != "hwnas":
            raise OptionError(f"a network trained for a Xylo core exports as NIR for rockpool (--format nir), not "
                              f"{format if format != 'nir' else 'the ' + profile + ' profile'}")
        return _export_xylo(net, arch, path, dt, folder)
    with folder.writing("export") if folder is not None else nullcontext():
        if format == "netx":
            return _export_netx(net, arch, path, lava)
        if format == "onnx":
            from .formats.onnx import export_onnx, matches_hwnas

            export_onnx(net, path, arch.timesteps)
            agrees = matches_hwnas(path, net, arch.timesteps)
            return Exported(path, f"wrote {path}: {arch.timesteps} input steps + {net.latency_steps} latency steps "
                                  "unrolled; onnx.checker passed; reference evaluator "
                                  f"{'matches' if agrees else 'DIFFERS from'} hwnas' output spike counts on a test "
                                  "batch", agrees)
        if profile == "portable":
            write(path, to_portable_nir(net, arch, dt))
        else:
            export_nir(net, path, arch, dt or DEFAULT_DT_S)
    loaded = load(path)  # read back: the check of a NIR file
    dt_s = PORTABLE_DT_S if profile == "portable" else dt or DEFAULT_DT_S
    return Exported(path, f"wrote {path}: {len(loaded.populations)} neuron populations, {len(loaded.connections)} "
                          f"connections ({profile} profile, dt {dt_s:g} s, {arch.timing} timing recorded in its "
                          "metadata)", True)


def _export_xylo(net, arch, path: Path, dt: float | None, folder: RunFolder | None) -> Exported:
    """Write the Xylo NIR graph of a network in the xylo arithmetic and check it: read back, and, where rockpool is
    installed, mapped by rockpool onto the same core as hwnas' lowering (up to where rockpool places each
    population)."""
    from .backends.xylo import XyloUnavailable, map_nir, same_core
    from .formats.nir import read_graph
    from .formats.xylo import DEFAULT_XYLO_DT_S, export_xylo
    from .hw_models.targets import load_target
    from .sim.xylo import lower_xylo

    with folder.writing("export") if folder is not None else nullcontext():
        export_xylo(net, path, arch, dt or DEFAULT_XYLO_DT_S)
    graph = read_graph(path)
    core = lower_xylo(net)
    wrote = (f"wrote {path}: {core.hidden} hidden and {core.outputs} output neurons, {core.inputs} inputs, for one "
             f"Xylo core (rockpool's NIR conventions)")
    recorded = folder.search_config().get("target") if folder is not None else None
    target = load_target(recorded) if recorded else None  # its mapper and sizes (None: XyloAudio 3's)
    try:
        mapped, placement = map_nir(graph, target)
    except XyloUnavailable as missing:
        return Exported(path, f"{wrote}; not mapped: {missing}", None)
    agrees = same_core(core, mapped, placement, net)
    return Exported(path, f"{wrote}; rockpool maps it onto {'the same core as' if agrees else 'ANOTHER core than'} "
                          "hwnas' lowering", agrees)


def _export_netx(net, arch: Architecture, path: Path, lava: bool | None) -> Exported:
    """Write netx HDF5 and (see ``lava`` of :func:`export_checked`) load it with lava-dl's netx, run a test batch in
    Lava and compare with hwnas' integer simulation of the file, layer by layer."""
    from .backends.lava import LavaError, lava_missing, run_netx
    from .formats.netx import netx_twin, write_netx
    from .formats.nir import load, to_nir
    from .sim.integer import simulate_fixed

    deployed = load(to_nir(net, arch))  # the weights as exported: quantised, batch-norm folded
    layers = write_netx(deployed, path)
    kinds = ", ".join(f"{layer.kind} {layer.population}" for layer in layers)
    wrote = f"wrote {path}: {len(layers)} layers ({kinds}); weights as even integers at scale 64"
    missing = lava_missing() if lava is not False else "not asked to"
    if missing and lava:
        raise LavaError(f"{path} written, but not checked: {missing}")
    if missing:
        return Exported(path, f"{wrote}\nnot run in Lava ({missing})", None)
    sample = torch.bernoulli(torch.full((arch.timesteps, 4, *arch.input_shape), 0.3),
                             generator=torch.Generator().manual_seed(0)).numpy()
    expected = simulate_fixed(netx_twin(deployed, layers), sample, timing="zero-delay")
    measured = run_netx(str(path), sample, [(layer.population, int(np.prod(layer.shape))) for layer in layers])
    agrees = all(np.array_equal(expected.spikes[name], measured.spikes[name]) for name in measured.spikes)
    return Exported(path, f"{wrote}\nloaded with lava.lib.dl.netx.hdf5.Network and run in Lava fixed-point on a test "
                          f"batch: spikes {'match' if agrees else 'DIFFER from'} hwnas' integer simulation of the file "
                          "in every layer", agrees)


def export(trained, path: str | Path | None = None, format: str = "nir", dt: float | None = None,
           profile: str = "hwnas") -> Path:
    """Write a trained model (a :class:`TrainResult`, a :class:`SpikingClassifier` or a trained run folder, whose
    ``model.<format>`` is the default ``path``) and return the path, as ``hwnas export`` does: ``nir`` (read back
    to check; ``profile="portable"`` for snnTorch and other readers, see :mod:`hwnas.formats.portable`; ``dt``
    seconds per step, default 1e-3), ``onnx`` (unrolled over the timesteps and the pipeline latency; its output
    spike counts checked against hwnas' on a random batch) or ``netx`` (lava-dl's HDF5 for Loihi 2; run in Lava
    and compared with hwnas when Lava runs here). A check that disagrees raises RuntimeError."""
    exported = export_checked(trained, path, format, dt, profile)
    if exported.agrees is False:
        raise RuntimeError(exported.description.splitlines()[-1])
    return exported.path


def _graph(model, dt: float | None):
    """The NIR graph of a trained model (written and read back, as a file would be) or of a .nir path, and its
    time step."""
    from .formats.nir import read_graph, recorded_dt

    if isinstance(model, (str, Path)):
        graph = read_graph(model)
        where = str(model)
    else:
        where = "the graph"
        with tempfile.TemporaryDirectory(prefix="hwnas-graph-") as scratch:
            graph = read_graph(export(model, Path(scratch) / "model.nir", dt=dt or 1e-3))
    from .formats.xylo import is_xylo_graph

    if is_xylo_graph(graph):  # Xylo's neuron, not the NIR neuron Lava and Norse run
        raise OptionError(f"{where} is a network for a Xylo core, in rockpool's conventions: validate its run "
                          "folder (or its trained model) with --target xylo-audio3, which runs it in XyloSim")
    dt_s = dt or recorded_dt(graph)
    if dt_s is None:
        raise NirError(f"{where} records no time step: pass --dt (dt=: seconds per step; graphs in per-step units, "
                       "as sinabs and snnTorch write them, need --dt 1)")
    return graph, float(dt_s)


def _inputs(graph, data, samples: int, seed: int, steps: int | None, runs: int, what: str, model=None,
            data_dir: str | None = None, say: Callable | None = None, folder: RunFolder | None = None):
    """Network input (T, B, ...) and labels for deploy and validate, the memory of ``runs`` simulations checked
    before any data is read: an array (time, batch, ...) is run as it is (no labels); else ``samples`` of the test
    split of ``data`` as :func:`search` takes it, else of the data a :class:`TrainResult` trained on, else digits.
    A dataset of a run (``folder``'s, or a :class:`TrainResult`'s) is split as its search split it, so that the
    test samples are ones training never saw; ``folder``'s is also checked against what the run recorded (not the
    split sizes: validate reads every sample, --max-samples may differ)."""
    from .backends.compare import describe_samples, inputs_from
    from .formats.nir import check_run_memory, recorded_architecture

    arch = recorded_architecture(graph)
    steps = steps or (arch.timesteps if arch else None)
    if isinstance(data, (torch.Tensor, np.ndarray)):  # network input (time, batch, ...), run as it is
        if data.ndim >= 2:
            check_run_memory(graph, data.shape[1], data.shape[0], runs, what)
        return inputs_from(None, samples, 0, "rate", seed, np.asarray(data))
    if steps is None:
        raise OptionError("the graph records no timesteps: pass --steps (steps=)")
    check_run_memory(graph, samples, steps, runs, what)
    split_seed, recorded = seed, folder
    if data is None and isinstance(model, TrainResult):
        if model.splits is not None:
            data = model.splits
        elif model.folder is not None:
            recorded = RunFolder(model.folder)
    if recorded is not None and (data is None or isinstance(data, str)):
        config = recorded.search_config()
        data = data or config.get("dataset") or "digits"
        data_dir, split_seed = data_dir or config.get("data_dir"), int(config.get("seed", seed))
    data = "digits" if data is None else data
    if data == DEFAULT_NAME:
        raise DataError("the run searched on data given in memory: give it again with data=")
    splits = as_splits(data, timesteps=steps, seed=split_seed, data_dir=data_dir)
    if folder is not None and isinstance(data, str):
        folder.check_data(splits.summary(), sizes=False)
    if say:
        say(describe_samples(splits, samples, seed))
    return inputs_from(splits, samples, steps, arch.encoding if arch else "rate", seed)


def deploy(model, data: Any = None, *, backend: str = "lava", mode: str = "fixed", samples: int = 100,
           seed: int = 0, steps: int | None = None, dt: float | None = None, data_dir: str | None = None,
           progress: bool | Callable = True):
    """Run a trained model (or a .nir file, hwnas' or another tool's) in Lava (``mode`` ``fixed``: Loihi's
    bit-accurate models, compared with hwnas' integer twin; ``float``) or Norse, on ``samples`` test samples of
    ``data`` (a dataset name, with ``data_dir``, or data as :func:`search` takes it; an array (time, batch, ...) runs
    as it is), and compare with hwnas' simulator layer by layer, as ``hwnas deploy`` does; returns the
    :class:`~hwnas.backends.compare.Comparison`."""
    from .backends.compare import compare
    from .backends.lava import require_lava
    from .limits import DEFAULT_THREADS
    from .sim.seeding import computing_threads

    if backend not in ("lava", "norse") or mode not in ("fixed", "float"):
        raise OptionError(f"backend must be lava or norse and mode fixed or float, got {backend!r}, {mode!r}")
    say = _printer(progress)
    graph, dt_s = _graph(model, dt)
    inputs, labels = _inputs(graph, data, samples, seed, steps, 2, "deploy", model, data_dir, say)
    require_lava([backend], "use --backend norse (backend='norse')")  # after the input's checks
    with computing_threads(DEFAULT_THREADS):  # results depend on the thread count: a fixed one
        return compare(graph, inputs, labels, dt_s, f"lava_{mode}" if backend == "lava" else "norse")


VALIDATE_BACKENDS = ("hwnas_int", "lava_fixed", "lava_float", "norse", "xylosim")  # xylosim: a Xylo core's run


def validate(model, data: Any = None, *, target: str | None = None, backends: tuple[str, ...] = VALIDATE_BACKENDS,
             samples: int = 100, seed: int = 0, dt: float | None = None, data_dir: str | None = None,
             trained: bool = True, progress: bool | Callable = True):
    """Run a trained model on every backend, compare them pairwise and estimate its energy on ``target`` (default:
    the target its search was for where recorded, else loihi2; xylo-audio3 for a model trained for a Xylo core)
    from the spikes Lava measured, as ``hwnas validate`` does; a model trained for a Xylo core runs in hwnas' twin of
    the core and, with ``xylosim`` among the backends, in XyloSim. Returns the
    :class:`~hwnas.backends.validate.Validation`
    (``to_dict()`` is what ``validation.json`` holds). ``model`` is a :class:`TrainResult`, a
    :class:`SpikingClassifier`, a .nir file, or an exported run folder (a folder, or a
    :class:`~hwnas.run_folder.RunFolder`): then its ``model.nir`` runs on the test
    split its search made (or ``data``), ``trained`` adds its ``model.pt``, and ``validation.json`` and
    ``validation.png`` are written there."""
    from .backends.lava import require_lava
    from .backends.validate import validate as run_validation
    from .hw_models.targets import load_target
    from .limits import DEFAULT_THREADS
    from .metrics import deployed_network
    from .sim.seeding import computing_threads

    unknown = sorted(set(backends) - set(VALIDATE_BACKENDS))
    if unknown:
        raise OptionError(f"unknown backend '{unknown[0]}' (known: {', '.join(VALIDATE_BACKENDS)})")
    require_lava(backends, "leave {lava} out of backends (--skip {lava})")
    say = _printer(progress)
    if isinstance(model, RunFolder) or (isinstance(model, (str, Path)) and Path(model).is_dir()):
        folder = model if isinstance(model, RunFolder) else RunFolder(model)
        target = target or folder.search_config().get("target") or "loihi2"
        return _validate_folder(folder, data, data_dir, target, tuple(backends), samples, seed, trained, say)
    network = _network(model) if trained else None
    if network is not None and network.arithmetic == "xylo":  # trained for a Xylo core: the twin and XyloSim
        return _validate_xylo_model(model, data, data_dir, load_target(target or "xylo-audio3"),
                                    "xylosim" in backends, samples, seed, say)
    target = target or "loihi2"
    backends = tuple(b for b in backends if b != "xylosim")
    graph, dt_s = _graph(model, dt)
    # every backend's rasters, plus hwnas' own, the trained model's and Norse's reference
    inputs, labels = _inputs(graph, data, samples, seed, None, len(backends) + 3, "validate", model, data_dir, say)
    with computing_threads(DEFAULT_THREADS):
        return run_validation(graph, inputs, labels, dt_s, load_target(target), tuple(backends), progress=say,
                              trained=None if network is None else deployed_network(network))


def _validate_folder(folder: RunFolder, data, data_dir, target: str, backends, samples: int, seed: int,
                     trained: bool, say):
    """:func:`validate` of a run folder's export (see there)."""
    from .backends.validate import plot_validation, validate as run_validation
    from .formats.nir import read_graph, recorded_architecture, recorded_dt
    from .formats.xylo import is_xylo_graph
    from .hw_models.targets import load_target
    from .limits import recorded_threads
    from .sim.seeding import computing_threads
    from .training.model_file import load_model

    model = folder.export("nir")
    if not model.is_file():
        raise OptionError(f"no model.nir in {folder.path}: run `hwnas train {folder.path}` and `hwnas export "
                          f"{folder.path}` first")
    target = load_target(target)
    graph = read_graph(model)
    if recorded_architecture(graph) is None:
        raise OptionError(f"{model} records no hwnas architecture: validate runs hwnas' own exports")
    if is_xylo_graph(graph):
        return _validate_xylo_folder(folder, graph, data, data_dir, target, backends, samples, seed, say)
    backends = tuple(b for b in backends if b != "xylosim")  # a Xylo core's simulator: not for this network
    folder.load_architecture()  # a search run folder, as `hwnas train` made it
    config = folder.search_config()
    # every backend's rasters, plus hwnas' own, the trained model's and Norse's reference
    inputs, labels = _inputs(graph, data, samples, seed, None, len(backends) + 3, "validate", None, data_dir, say,
                             folder)
    dt_s = recorded_dt(graph)
    if dt_s is None:
        raise OptionError(f"{model} records no time step (hwnas.dt_s): export it again with hwnas export")
    network = None
    if trained and folder.model.is_file():
        if folder.model.stat().st_mtime > model.stat().st_mtime:
            raise OptionError(f"{model} is older than {folder.model}: run `hwnas export {folder.path}` again (or pass "
                              "--skip trained)")
        network = load_model(folder.model)[0]
    with folder.writing("validate"), computing_threads(recorded_threads(config)):
        result = run_validation(graph, inputs, labels, dt_s, target, backends, progress=say,
                                search_estimate=folder.search_estimate(), trained=network)
        write_json_atomic(folder.validation, result.to_dict())
        plot_validation(result, folder.validation_plot)
    return result


def _xylo_backends(xylosim: bool, say) -> tuple[str, ...]:
    """The backends a Xylo validation runs: hwnas' twin, and XyloSim when asked for and rockpool is installed."""
    from .backends.xylo import XyloUnavailable, rockpool_xylo

    if not xylosim:
        return ("hwnas_xylo",)
    try:
        rockpool_xylo()
    except XyloUnavailable as missing:
        if say:
            say(f"xylosim left out: {missing}")
        return ("hwnas_xylo",)
    return ("hwnas_xylo", "xylosim")


def _validate_xylo_model(model, data, data_dir, target, xylosim: bool, samples: int, seed: int, say):
    """:func:`validate` of a trained model held in memory that was trained for a Xylo core."""
    from .backends.xylo import validate_xylo
    from .formats.xylo import to_xylo_nir
    from .limits import DEFAULT_THREADS
    from .metrics import deployed_network
    from .sim.seeding import computing_threads

    if target.network != "dense":
        raise OptionError(f"the model was trained for a Xylo core: validate it with target='xylo-audio3' (not "
                          f"{target.name})")
    net, arch = _trained_model(model)
    net = deployed_network(net)
    graph = to_xylo_nir(net, arch)
    wanted = _xylo_backends(xylosim, say)
    inputs, labels = _inputs(graph, data, samples, seed, None, 3, "validate", model, data_dir, say)
    with computing_threads(DEFAULT_THREADS):
        return validate_xylo(net, inputs, labels, target, graph, wanted, say)


def _validate_xylo_folder(folder: RunFolder, graph, data, data_dir, target, backends, samples: int, seed: int,
                          say):
    """:func:`validate` of a run folder trained for a Xylo core: its trained model, hwnas' twin of the core and
    XyloSim on rockpool's mapping of its ``model.nir`` (left out, with a note, where rockpool is not installed)."""
    from .backends.validate import plot_validation
    from .backends.xylo import validate_xylo
    from .limits import recorded_threads
    from .sim.seeding import computing_threads
    from .training.model_file import load_model

    if not folder.model.is_file():
        raise OptionError(f"no model.pt in {folder.path}: a Xylo network is validated against its trained model")
    if folder.model.stat().st_mtime > folder.export("nir").stat().st_mtime:
        raise OptionError(f"{folder.export('nir')} is older than {folder.model}: run `hwnas export {folder.path}` "
                          "again")
    if target.network != "dense":
        raise OptionError(f"{folder.path} holds a network for a Xylo core: validate it with --target xylo-audio3 "
                          f"(not {target.name})")
    wanted = _xylo_backends("xylosim" in backends, say)
    net = load_model(folder.model)[0]
    inputs, labels = _inputs(graph, data, samples, seed, None, 3, "validate", None, data_dir, say, folder)
    with folder.writing("validate"), computing_threads(recorded_threads(folder.search_config())):
        result = validate_xylo(net, inputs, labels, target, graph, wanted, say)
        write_json_atomic(folder.validation, result.to_dict())
        plot_validation(result, folder.validation_plot)
    return result


def _network(model) -> SpikingNetwork | None:
    """The network of a trained model held in memory (None for a .nir path)."""
    if isinstance(model, (str, Path)):
        return None
    classifier = model.model if isinstance(model, TrainResult) else model
    return classifier.network if isinstance(classifier, SpikingClassifier) else classifier


def neurobench_model(model, timing: str | None = None):
    """A trained model as a NeuroBench model, for NeuroBench's ``Benchmark`` and metrics (see
    :func:`hwnas.metrics.neurobench_model`)."""
    from .metrics import neurobench_model as make

    classifier = model.model if isinstance(model, TrainResult) else model
    return make(classifier, timing)


def report(run: str | Path | TrainResult | SearchResult, out: str | Path | None = None) -> Path:
    """Write the one-page HTML report of a run folder (default ``RUN/report.html``) and return its path; a result
    held in memory has no folder to report on (search or train with ``out=``)."""
    from .html_report import write_report
    from .io_utils import check_writable

    if isinstance(run, (TrainResult, SearchResult)):
        if run.folder is None:
            raise OptionError("this result has no run folder: search or train with out= to keep one")
        run = run.folder
    if out is not None:
        check_writable(out, "--out", suffixes=(".html", ".htm"))
    return write_report(run, out)
