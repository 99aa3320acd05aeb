"""Training-free scores computed from the binary spike codes of a batch.

* ``sahd`` (SNASNet, Kim et al. ECCV 2022; LightSNN, Liu et al. 2025): for each spiking population l and step t,
  codes x_i in {0,1}^N of the B samples; rate s_i = |x_i| / N; Hamming distance H_ij; expected distance
  E_ij = N [s_i (1 - s_j) + (1 - s_i) s_j]; K^(l,t) = N - 0.5 H / (E + 1e-3); K = mean over (l, t);
  score = log |det K|.
* ``naswot`` (Mellor et al., ICML 2021): the plain Hamming kernel of the concatenated codes,
  K = N_A - H (N_A the total code length), score = log |det K|.

Score health is checked, not assumed: two samples whose codes are identical in every population and step make K
exactly singular (true score -inf, while a determinant routine returns -inf or round-off noise), and so does a
network that is silent for two samples. Such kernels, and kernels whose smallest eigenvalue is below round-off
level, are *degenerate*: they get score -inf and a reason, never a noisy number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

# Eigenvalues below this fraction of the largest are indistinguishable from round-off of a singular kernel.
RELATIVE_EIGEN_FLOOR = 1e-10


@dataclass
class KernelStats:
    """A B x B kernel together with the code statistics needed to judge its health."""

    kernel: torch.Tensor          # float64 (B, B)
    total_hamming: torch.Tensor   # Hamming distance summed over every scored (population, step)
    codes_scored: int             # number of (population, step, sample) codes that entered
    silent_codes: int             # of those, codes with no spike at all


@dataclass
class ScoreResult:
    """A score and its health report."""

    score: float
    degenerate: bool
    reason: str
    silent_share: float
    duplicate_pairs: int

    def to_dict(self) -> dict:
        return {"score": self.score, "degenerate": self.degenerate, "reason": self.reason,
                "silent_share": self.silent_share, "duplicate_pairs": self.duplicate_pairs}


def _gram_terms(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For codes (S, B, N) in {0,1}: spike counts r (S, B) and Hamming distances H (S, B, B), in float64.

    The products run in float32 (exact for integer counts below 2^24); the kernel arithmetic after them runs in
    float64, because log|det K| of a nearly rank-one K amplifies float32 round-off into score noise.
    """
    x = codes.float()
    return hamming_terms(x.sum(-1), torch.bmm(x, x.transpose(1, 2)))


def hamming_terms(counts: torch.Tensor, gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spike counts r (S, B) and Hamming distances H (S, B, B) in float64, from the counts and the Gram matrices
    x x^T (S, B, B) of the codes (whole numbers, so any order of summation gives the same)."""
    r, gram = counts.double(), gram.double()
    hamming = r.unsqueeze(2) + r.unsqueeze(1) - 2.0 * gram
    return r, hamming.clamp_min(0.0)


class StepGrams:
    """The terms of the scores gathered step by step, without keeping the codes: per code set (a population's
    window of steps), each step's spike counts and Gram matrix (:meth:`add`); :meth:`terms` gives what
    :func:`_gram_terms` gives for the same codes, bit for bit. The neurons may come in any order."""

    def __init__(self, batch: int, device: torch.device) -> None:
        self.batch, self.device = batch, device
        self._steps: dict[object, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._neurons: dict[object, int] = {}

    def add(self, key, codes: torch.Tensor | None, neurons: int) -> None:
        """One step of code set ``key``: ``codes`` (B, N), spikes per neuron (0/1, or counts for a Xylo neuron), or
        None for a silent step."""
        if codes is None:
            counts = torch.zeros(self.batch, device=self.device)
            gram = torch.zeros(self.batch, self.batch, device=self.device)
        else:
            x = codes.float()
            counts, gram = x.sum(1), x @ x.T  # not the Gram's diagonal: a Xylo neuron spikes several times a step
        self._steps.setdefault(key, []).append((counts, gram))
        self._neurons[key] = neurons

    def terms(self, key) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """r (S, B), H (S, B, B) and N of code set ``key``, or None when it got no step."""
        steps = self._steps.get(key)
        if not steps:
            return None
        r, hamming = hamming_terms(torch.stack([c for c, _ in steps]), torch.stack([g for _, g in steps]))
        return r, hamming, self._neurons[key]


def _accumulate(code_sets: list, kernel_of) -> tuple[torch.Tensor, torch.Tensor, int, int, int]:
    """Sum ``kernel_of(r, hamming, n)`` (a (S, B, B) kernel per step) over all populations and steps; each code
    set is codes (S, B, N) or the terms (r, hamming, N) of :class:`StepGrams`.

    Returns the summed kernel, the summed Hamming distances, the number of (population, step) pairs, the number
    of codes scored and how many of them were silent.
    """
    total = total_h = None
    pairs = silent = scored = 0
    for codes in code_sets:
        if isinstance(codes, torch.Tensor):
            r, hamming = _gram_terms(codes)
            n = codes.shape[2]
        else:
            r, hamming, n = codes
        steps, batch = r.shape
        kernel, h = kernel_of(r, hamming, n).sum(0), hamming.sum(0)
        total = kernel if total is None else total + kernel
        total_h = h if total_h is None else total_h + h
        pairs += steps
        silent += int((r == 0).sum())
        scored += steps * batch
    if total is None:
        raise ValueError("no codes to score")
    return total, total_h, pairs, scored, silent


def sahd_kernel(code_sets: list) -> KernelStats:
    """SAHD kernel: mean over populations and steps of N - 0.5 H / (E + 1e-3); ``code_sets`` holds (S, B, N) codes
    or :meth:`StepGrams.terms`."""

    def per_step(r: torch.Tensor, hamming: torch.Tensor, n: int) -> torch.Tensor:
        expected = r.unsqueeze(2) + r.unsqueeze(1) - 2.0 * r.unsqueeze(2) * r.unsqueeze(1) / n
        return n - 0.5 * hamming / (expected + 1e-3)

    total, total_h, pairs, scored, silent = _accumulate(code_sets, per_step)
    return KernelStats(total / pairs, total_h, scored, silent)


def naswot_kernel(code_sets: list) -> KernelStats:
    """NASWOT kernel of the concatenated codes: total code length minus total Hamming distance."""
    total, total_h, _, scored, silent = _accumulate(code_sets, lambda r, hamming, n: n - hamming)
    return KernelStats(total, total_h, scored, silent)


SCORES: dict[str, Callable[[list], KernelStats]] = {"sahd": sahd_kernel, "naswot": naswot_kernel}


def logdet_score(stats: KernelStats) -> ScoreResult:
    """log |det K| with explicit degeneracy checks (duplicate codes, near-singular kernel)."""
    batch = stats.kernel.shape[0]
    off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=stats.total_hamming.device)
    duplicates = int(((stats.total_hamming == 0) & off_diagonal).sum()) // 2
    silent_share = stats.silent_codes / max(stats.codes_scored, 1)
    if duplicates:
        return ScoreResult(-math.inf, True, f"{duplicates} pair(s) of samples with identical spike codes",
                           silent_share, duplicates)
    symmetric = 0.5 * (stats.kernel + stats.kernel.T)
    eigenvalues = torch.linalg.eigvalsh(symmetric.cpu()).abs()
    largest = float(eigenvalues.max())
    if largest == 0 or float(eigenvalues.min()) <= RELATIVE_EIGEN_FLOOR * largest:
        return ScoreResult(-math.inf, True, "kernel numerically singular", silent_share, 0)
    return ScoreResult(float(eigenvalues.log().sum()), False, "", silent_share, 0)


def score_codes(name: str, code_sets: list) -> ScoreResult:
    """Compute registered score ``name`` on per-population codes (S, B, N) or their :meth:`StepGrams.terms`."""
    if name not in SCORES:
        raise KeyError(name)
    return logdet_score(SCORES[name](code_sets))
