"""AutoSNN's one-shot supernet (Na et al., ICML 2022): one network holding every op of the cell space, trained
with single-path uniform sampling, whose weights every candidate inherits to be judged by accuracy.

Each training step draws one canonical cell of the space uniformly (with the step's own seeded generator),
switches every other op of the supernet off and takes a surrogate-gradient step on one batch, in the target's
timing model: every op is trained inside the cells it can appear in. The spikes per sample of the sampled paths
are logged; their mean over the last epoch is AutoSNN's N_avg, the reference of the spike-aware fitness
(:func:`spike_aware_fitness`). A candidate is a network of its own (only its populations and connections) that
loads the supernet's weights of its connections by module key, re-estimates its batch-norm statistics on a few
training batches (its inputs differ from the mixture of paths the shared statistics saw) and is evaluated on
the validation split. The supernet is saved after every epoch (``supernet.pt`` in the run folder), so an
interrupted search resumes from its last finished epoch.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..arch.builder import build_network
from ..arch.genotype import Architecture, Cell
from ..data.splits import DatasetSplits, encode_batch
from ..errors import ResumeError
from ..io_utils import write_bytes_atomic
from ..sim.network import SpikingNetwork
from ..sim.seeding import build_seeded
from .space import SearchSpace

FORMAT = "hwnas.supernet"
BN_CALIBRATION_BATCHES = 4


def spike_aware_fitness(accuracy: float, spikes: float, spikes_avg: float, spike_lambda: float) -> float:
    """AutoSNN's fitness F = Acc x (N / N_avg)^lambda (lambda < 0 favours fewer spikes); a silent network
    (N = 0) gets F = 0, as it computes nothing."""
    if spikes <= 0 or spikes_avg <= 0:
        return 0.0
    return accuracy * (spikes / spikes_avg) ** spike_lambda


class Supernet:
    """The supernet of ``space`` in ``template``'s skeleton, its training and its candidates."""

    def __init__(self, template: Architecture, space: SearchSpace, seed: int, device: torch.device) -> None:
        self.template = template
        self.space = space
        self.seed = seed
        self.device = device
        every_edge = space.nonzero_edges()
        self.net = build_seeded(lambda: build_network(template, every_edge), seed, "one-shot supernet").to(device)
        self.log: list[dict] = []

    @property
    def identity(self) -> dict:
        """What the supernet's weights depend on (a saved supernet is resumed only when it matches)."""
        return {"architecture": self.template.to_dict(), "chains_only": self.space.chains_only,
                "allow_backward": self.space.allow_backward, "seed": self.seed}

    def activate(self, cell: Cell) -> None:
        """Switch off every op that ``cell`` does not use (a single path through the supernet)."""
        used = {edge for edge in cell if edge.op != "zero"}
        off = {key for edge, keys in self.net.edge_modules.items() if edge not in used for key in keys}
        self.net.set_disabled(off)

    def sample_path(self, rng: np.random.Generator) -> Cell:
        """A uniformly drawn canonical cell of the space (uniform single-path sampling)."""
        return self.space.sample(rng)

    @property
    def spikes_avg(self) -> float:
        """AutoSNN's N_avg: spikes per sample of the sampled paths, averaged over the last trained epoch."""
        if not self.log:
            raise ValueError("the supernet has not been trained")
        return self.log[-1]["spikes_per_sample"]

    def train(self, splits: DatasetSplits, epochs: int, lr: float, batch_size: int, path: Path,
              say: Callable[[str], None] | None = None) -> None:
        """Train for ``epochs`` epochs in all (continuing from ``path`` when it holds earlier epochs of this
        supernet), saving ``path`` after every epoch."""
        say = say or (lambda message: None)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self._resume(path, optimizer, epochs)
        x, y = splits.split("train")
        arch = self.template
        for epoch in range(len(self.log) + 1, epochs + 1):
            started = time.perf_counter()
            self.net.train()
            generator = torch.Generator().manual_seed(self.seed * 1000 + epoch)
            paths = np.random.default_rng([self.seed, 4, epoch])
            order = torch.randperm(x.shape[0], generator=generator)
            loss_sum, spikes, samples, batches = 0.0, 0.0, 0, 0
            for start in range(0, x.shape[0], batch_size):
                index = order[start:start + batch_size]
                if index.numel() < 2:
                    continue  # batch-norm needs two samples
                self.activate(self.sample_path(paths))
                batch = encode_batch(x[index], splits.kind, arch.timesteps, arch.encoding, generator).to(self.device)
                out = self.net(batch)
                loss = F.cross_entropy(out.logits, y[index].to(self.device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                loss_sum += loss.item()
                spikes += out.activity.totals_per_sample()["spikes"] * index.numel()
                samples += index.numel()
                batches += 1
            self.log.append({"epoch": epoch, "loss": loss_sum / max(batches, 1),
                             "spikes_per_sample": spikes / max(samples, 1),
                             "seconds": time.perf_counter() - started})
            self._save(path, optimizer)
            say(f"supernet epoch {epoch}/{epochs}: loss {self.log[-1]['loss']:.4f}, "
                f"{self.log[-1]['spikes_per_sample']:.0f} spikes per sample on the sampled paths")

    def _save(self, path: Path, optimizer: torch.optim.Optimizer) -> None:
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "identity": self.identity, "log": self.log,
                    "state_dict": self.net.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
        write_bytes_atomic(path, buffer.getvalue())

    def _resume(self, path: Path, optimizer: torch.optim.Optimizer, epochs: int) -> None:
        if not path.exists():
            return
        try:
            saved = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # a truncated or foreign file fails in many ways inside torch.load
            raise ResumeError(f"cannot read the saved supernet {path}: {type(exc).__name__}: {exc}") from None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise ResumeError(f"{path} is not an hwnas supernet")
        if saved.get("identity") != self.identity:
            raise ResumeError(f"{path} holds a supernet of another search (skeleton, space or seed differ)")
        if len(saved["log"]) > epochs:
            raise ResumeError(f"{path} holds {len(saved['log'])} trained epochs, more than the {epochs} asked for")
        self.net.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        self.log = list(saved["log"])

    def candidate(self, cell: Cell, splits: DatasetSplits, batch_size: int) -> SpikingNetwork:
        """The network of ``cell`` with the supernet's weights and batch-norm statistics re-estimated on
        :data:`BN_CALIBRATION_BATCHES` training batches (the same batches for every candidate)."""
        arch = self.template.with_cell(cell)
        net = build_network(arch).to(self.device)
        own = net.state_dict()
        net.load_state_dict({key: value for key, value in self.net.state_dict().items() if key in own})
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = None  # a cumulative average over the calibration batches
        x, _ = splits.split("train")
        generator = torch.Generator().manual_seed(self.seed + 104729)
        order = torch.randperm(x.shape[0], generator=generator)
        net.train()
        with torch.no_grad():
            for number in range(BN_CALIBRATION_BATCHES):
                index = order[number * batch_size:(number + 1) * batch_size]
                if index.numel() < 2:
                    break
                net(encode_batch(x[index], splits.kind, arch.timesteps, arch.encoding, generator).to(self.device))
        net.eval()
        return net


def describe_log(log: list[dict]) -> dict:
    """The supernet's training log for ``report.json``."""
    return {"epochs": len(log), "spikes_avg": log[-1]["spikes_per_sample"] if log else math.nan,
            "log": log, "note": "spikes_avg (AutoSNN's N_avg): spikes per sample of the uniformly sampled paths "
                                "in the last epoch, on the training split"}



