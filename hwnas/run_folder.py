"""The run folder: the one owner of its file names and of reading what earlier steps wrote there.

A run folder is what ``hwnas search`` creates and every later step adds to (``hwnas train``, ``export``,
``validate``); ``hwnas run`` chains them. Files (all written atomically):

=====================  ======================================================================
architecture.json      the search's winner (:class:`~hwnas.arch.genotype.Architecture`)
search.csv             one row per scored evaluation
report.json            the search's report; ``config`` is the search's configuration
checkpoint.json        the search's cache of results (what ``--resume`` reads)
refine/*.pt            the refinement's training states, which the next rung continues
pareto.png             score versus energy of every candidate; refined accuracy versus energy and latency
model.pt               the trained network (``hwnas train``)
train.json             the training's figures
model.nir / .onnx/.h5  exports (``hwnas export``)
validation.json/.png   backends compared (``hwnas validate``)
report.html            every step on one page (``hwnas report``, written by ``hwnas run``)
.hwnas.lock            held (``flock``) by the process writing the folder: one writer at a time
=====================  ======================================================================
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import HwnasError, OptionError, ResumeError

ARCHITECTURE = "architecture.json"
SEARCH_CSV = "search.csv"
REPORT = "report.json"
CHECKPOINT = "checkpoint.json"
PARETO = "pareto.png"
MODEL = "model.pt"
TRAIN_REPORT = "train.json"
SUPERNET = "supernet.pt"
REFINE_STATES = "refine"
EXPORTS = {"nir": "model.nir", "onnx": "model.onnx", "netx": "model.h5"}
VALIDATION = "validation.json"
VALIDATION_PLOT = "validation.png"
LOCK = ".hwnas.lock"

_HELD: dict[Path, int] = {}  # folders this process holds the lock of, with the depth of nested holds


class RunFolder:
    """Paths of a run folder's files, and readers of what they hold."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def architecture(self) -> Path:
        return self.path / ARCHITECTURE

    @property
    def search_csv(self) -> Path:
        return self.path / SEARCH_CSV

    @property
    def report(self) -> Path:
        return self.path / REPORT

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def pareto(self) -> Path:
        return self.path / PARETO

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def train_report(self) -> Path:
        return self.path / TRAIN_REPORT

    @property
    def supernet(self) -> Path:
        return self.path / SUPERNET

    def refine_state(self, key: str) -> Path:
        """Where the training state of refinement checkpoint entry ``key`` is kept (a file per entry)."""
        return self.path / REFINE_STATES / (hashlib.sha256(key.encode()).hexdigest()[:20] + ".pt")

    def export(self, fmt: str) -> Path:
        """Where ``hwnas export --format fmt`` writes (``nir``, ``onnx``, ``netx``)."""
        return self.path / EXPORTS[fmt]

    @property
    def validation(self) -> Path:
        return self.path / VALIDATION

    @property
    def validation_plot(self) -> Path:
        return self.path / VALIDATION_PLOT

    @contextmanager
    def writing(self, command: str):
        """Hold the folder's lock while ``command`` writes it (creating the folder): a second process that tries
        gets a one-line :class:`OptionError` naming the holder. Re-entrant within a process (``hwnas run`` chains
        steps); the operating system releases the lock when the process ends, however it ends."""
        self.path.mkdir(parents=True, exist_ok=True)
        key = self.path.resolve()
        if key in _HELD:
            _HELD[key] += 1
            try:
                yield self
            finally:
                _HELD[key] -= 1
            return
        handle = open(self.path / LOCK, "a+", encoding="utf-8")
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise OptionError(f"{self.path} is being written by {holder}: wait for it to finish or choose "
                                  "another folder") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"hwnas {command} (pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
            handle.flush()
            _HELD[key] = 1
            try:
                yield self
            finally:
                del _HELD[key]
        finally:
            handle.close()

    def branch(self, path: str | Path, architecture) -> "RunFolder":
        """A new run folder at ``path`` for another training of this search (``hwnas train RUN --out NEW``):
        this folder's ``report.json`` and ``search.csv`` copied there, ``architecture`` (the winner or a picked
        candidate) as its ``architecture.json``, written last. A folder that holds a training, a search or another
        architecture is refused in one line; one that an interrupted branch or a refused training left (the same
        architecture, no model) is written again, so the same command continues."""
        from .io_utils import write_bytes_atomic

        new = RunFolder(path)
        if new.path.exists() and new.path.resolve() == self.path.resolve():
            raise OptionError(f"{new.path} is the search's own folder: train there, or name a new folder")
        with new.writing("train"):
            held = [f.name for f in (new.model, new.train_report, new.checkpoint) if f.exists()]
            if not held and new.architecture.exists() and not new._holds(architecture):
                held = [new.architecture.name]
            if held:
                raise OptionError(f"{new.path} already holds a run ({held[0]}): name a new folder to train in")
            for source, target in ((self.search_csv, new.search_csv), (self.report, new.report)):
                if source.is_file():
                    write_bytes_atomic(target, source.read_bytes())
            architecture.save(new.architecture)
        return new

    def _holds(self, architecture) -> bool:
        """Whether the folder's ``architecture.json`` reads as ``architecture``."""
        try:
            return self.load_architecture() == architecture
        except HwnasError:
            return False

    def load_architecture(self):
        """The search's winner; a missing file is a one-line error saying what to run."""
        from .arch.imported import load_architecture

        if not self.architecture.is_file():
            raise OptionError(f"no {ARCHITECTURE} in {self.path} (train a search run folder)")
        return load_architecture(self.architecture)

    def read_json(self, path: Path, missing=None):
        """A JSON file of the folder (``missing`` when there is none); unreadable JSON is a one-line error."""
        if not path.is_file():
            return missing
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ResumeError(f"{path} is not valid JSON ({exc})") from None

    def search_report(self) -> dict:
        """``report.json`` (empty when the folder has none)."""
        report = self.read_json(self.report, {})
        if not isinstance(report, dict):
            raise ResumeError(f"{self.report} does not hold a search report")
        return report

    def search_config(self) -> dict:
        """The search's configuration as recorded in ``report.json`` (empty when there is none)."""
        config = self.search_report().get("config", {})
        if not isinstance(config, dict):
            raise ResumeError(f"{self.report}: 'config' is not an object")
        return config

    def check_data(self, summary: dict, sizes: bool = True) -> None:
        """Refuse (one line) data that is not what the search ran on: another name, kind, input shape or class
        count, or (``sizes``) other split sizes. A run searched on data handed over in memory records that data's
        summary, so a later step that would load something else says so instead of training on it."""
        recorded = self.search_report().get("dataset")
        if not isinstance(recorded, dict):
            return  # a run folder from before reports recorded their data
        keys = ("name", "kind", "input_shape", "num_classes") + (("train", "val", "test") if sizes else ())
        differ = [key for key in keys if key in recorded and recorded[key] != summary.get(key)]
        if differ:
            pairs = ", ".join(f"{key} {recorded[key]} vs {summary.get(key)}" for key in differ)
            raise OptionError(f"{self.path} was searched on other data than this step loads ({pairs}; searched vs "
                              "loaded): give the same --dataset, --data-dir and --max-samples, or pass the search's "
                              "data from Python")

    def search_estimate(self) -> dict | None:
        """The search's energy estimate of the untrained winner, if it recorded one."""
        return self.search_report().get("estimate")

