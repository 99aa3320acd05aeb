"""Scoring a network at initialisation on fixed batches: the training-free signal of the search."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from ..errors import OptionError
from ..sim.layout import batch_rows, standard_layout
from ..sim.network import SimOutput, SpikingNetwork
from ..sim.seeding import pick_device
from .names import BN_MODES
from .rate_init import calibrate_firing
from .scores import SCORES, ScoreResult, StepGrams, score_codes


@dataclass(frozen=True)
class ScoreConfig:
    """How candidates are scored.

    ``bn_mode``: ``batch`` normalises each convolution's output with the statistics of the scoring batch (as
    SNASNet scores; keeps untrained networks out of the silent regime), ``identity`` leaves fresh batch-norm as
    the identity. ``reset_state``: start every repeat from rest; without it the repeats run as one continuous
    stream and the neurons carry their state from one batch into the next. ``target_rate``: when set, calibrate
    every population to fire at this rate on the first scoring batch before scoring
    (:mod:`hwnas.nas.rate_init`).
    """

    score: str = "sahd"
    batch_size: int = 64
    repeats: int = 2
    bn_mode: str = "batch"
    reset_state: bool = True
    target_rate: float | None = None

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise OptionError(f"unknown score '{self.score}' (choose {', '.join(SCORES)})")
        if self.batch_size < 2:
            raise OptionError(f"--batch-size must be at least 2 (a kernel needs two samples), got {self.batch_size}")
        if self.repeats < 1:
            raise OptionError(f"--repeats must be at least 1, got {self.repeats}")
        if self.bn_mode not in BN_MODES:
            raise OptionError(f"unknown --bn-mode '{self.bn_mode}' (choose {', '.join(BN_MODES)})")
        if self.target_rate is not None and not 0.0 < self.target_rate < 1.0:
            raise OptionError(f"the target firing rate must lie in (0, 1), got {self.target_rate}")

    def to_dict(self) -> dict:
        return asdict(self)


class Evaluator:
    """Scores networks on the same encoded batches, each of shape (T, B, C, H, W)."""

    def __init__(self, batches: list[torch.Tensor], config: ScoreConfig, device: torch.device | None = None) -> None:
        if len(batches) != config.repeats:
            raise ValueError("one batch per repeat is needed")
        self.config = config
        self.device = device or pick_device()
        self.batches = [b.to(self.device) for b in batches]

    @torch.no_grad()
    def evaluate(self, net: SpikingNetwork) -> dict:
        """Score ``net``; returns a flat dict of the score, its health, firing rate and activity per sample, and
        under ``"activity"`` the :class:`~hwnas.activity.ActivityStats` of the scoring runs."""
        start = time.perf_counter()
        net = net.to(self.device)
        net.train(self.config.bn_mode == "batch")
        # The standard layout (hwnas.sim.layout): ATen's channels_last batch-norm rounds the batch statistics
        # otherwise, and by the thread count; the pruning's ablations then ranked otherwise and chose another cell
        # on full MNIST. In the standard layout the scores are those of earlier versions, bit for bit.
        with standard_layout():
            if self.config.target_rate is not None:
                calibrate_firing(net, self.batches[0], self.config.target_rate)
            steps = self.batches[0].shape[0]
            if self.config.reset_state:
                runs = [self._scored_run(net, batch, [0], steps) for batch in self.batches]
            else:  # one continuous stream: the repeats' windows start every `steps` steps
                stream = torch.cat(self.batches, dim=0)
                runs = [self._scored_run(net, stream, [r * steps for r in range(len(self.batches))], steps)]
        activity = runs[0][0].activity
        for output, _ in runs[1:]:
            activity = activity.merge(output.activity)
        results = [result for _, scored in runs for result in scored]
        totals = activity.totals_per_sample()
        degenerate = [r for r in results if r.degenerate]
        score = -math.inf if degenerate else sum(r.score for r in results) / len(results)
        return {
            "score": score,
            "degenerate": bool(degenerate),
            "reason": degenerate[0].reason if degenerate else "",
            "silent_share": sum(r.silent_share for r in results) / len(results),
            "firing_rate": totals["firing_rate"],
            "spikes_per_sample": totals["spikes"],
            "synops_per_sample": totals["synops"],
            "neurons": totals["neurons"],
            "latency_steps": runs[0][0].latency_steps,
            "seconds": time.perf_counter() - start,
            "activity": activity,
        }

    def _scored_run(self, net: SpikingNetwork, inputs: torch.Tensor, offsets: list[int],
                    steps: int) -> tuple[SimOutput, list[ScoreResult]]:
        """Simulate ``inputs`` and score, for each offset, every population reachable from the input over the
        ``steps`` steps from offset + its arrival step; the codes' Gram terms are gathered while simulating
        (:class:`~hwnas.nas.scores.StepGrams`), the codes themselves never kept."""
        arrival = net.arrival_steps()
        windows = {name: [(number, offset + int(arrival[name])) for number, offset in enumerate(offsets)]
                   for name in net.populations if not math.isinf(arrival[name])}  # unreachable: no information
        grams = StepGrams(inputs.shape[1], inputs.device)

        def observe(name: str, t: int, spikes: torch.Tensor | None) -> None:
            for number, first in windows.get(name, ()):
                if first <= t < first + steps:
                    grams.add((number, name), None if spikes is None else batch_rows(spikes),
                              net.populations[name].neurons)

        output = net(inputs, observe=observe)
        scored = []
        for number in range(len(offsets)):
            code_sets = [grams.terms((number, name)) for name in net.populations]
            scored.append(score_codes(self.config.score, [terms for terms in code_sets if terms is not None]))
        return output, scored
