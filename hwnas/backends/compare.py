"""Comparing two backends' recordings of the same samples, layer by layer (the backends are in
:mod:`hwnas.backends.registry`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.splits import DatasetSplits, balanced_subset, encode_batch, strictly_correct
from ..errors import OptionError, first_line


@dataclass
class Comparison:
    """Per layer spikes per sample in hwnas and the backend, and how many spike values coincide."""

    backend: str
    samples: int
    steps: int
    layers: dict[str, dict] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    output_spikes: np.ndarray | None = None  # the backend's, (samples, steps, classes)
    output: str = ""  # the output population (its current is the readout: it may rarely spike)

    def to_dict(self) -> dict:
        return {"backend": self.backend, "samples": self.samples, "steps": self.steps, "layers": self.layers,
                "accuracy": self.accuracy}


def read_input_array(path: str) -> np.ndarray:
    """An ``--input`` array (time, batch, ...) from a ``.npy`` file: numbers, finite, at least three dimensions;
    anything else is a one-line :class:`OptionError`."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise OptionError(f"cannot read --input {path}: {first_line(exc)}") from None
    if not isinstance(array, np.ndarray):
        raise OptionError(f"--input {path} holds several arrays (an .npz): give one .npy array (time, batch, ...)")
    if array.dtype.kind not in "biuf":
        raise OptionError(f"--input {path} holds {array.dtype} values: give numbers (time, batch, ...)")
    if array.ndim < 3:
        raise OptionError(f"--input must be an array (time, batch, ...), got shape {list(array.shape)}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise OptionError(f"--input {path} holds NaN or infinite values")
    return array


def inputs_from(splits: DatasetSplits | None, samples: int, timesteps: int, encoding: str, seed: int,
                array: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Network input (T, B, ...) from ``samples`` of the test split, class-balanced and drawn with ``seed``
    (:func:`~hwnas.data.splits.balanced_subset`; every sample when it has no more), with their labels; or from a
    given array (time first)."""
    if array is not None:
        if array.ndim < 3:
            raise OptionError(f"--input must be an array (time, batch, ...), got shape {list(array.shape)}")
        return torch.as_tensor(array, dtype=torch.float32), None
    x, y = splits.split("test")
    chosen = balanced_subset(y, samples, seed)
    x, y = x[chosen], y[chosen]
    generator = torch.Generator().manual_seed(seed)
    return encode_batch(x, splits.kind, timesteps, encoding, generator), y


def describe_samples(splits: DatasetSplits, samples: int, seed: int) -> str:
    """One line naming the test samples :func:`inputs_from` chose."""
    total = int(splits.split("test")[1].numel())
    if samples >= total:
        return f"test samples: all {total}"
    return f"test samples: {samples} of {total}, class-balanced, drawn with seed {seed} (--seed)"


def silence_notes(spikes: dict[str, float], output: str, samples: int) -> list[str]:
    """One line for each hidden layer (``spikes``: layer -> spikes per sample) that never spiked: a graph written
    in per-step units (sinabs, snnTorch) run with a dt in seconds integrates nothing."""
    return [f"layer {name}: no spikes in {samples} samples; is --dt right?"
            for name, value in spikes.items() if name != output and value == 0]


def rate_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of per-neuron spike counts of two rasters (steps, samples, neurons); 1 when both are
    silent."""
    rate_a, rate_b = a.sum((0, 1)).double(), b.sum((0, 1)).double()
    norm = float(rate_a.norm() * rate_b.norm())
    if norm == 0:
        return float(float(rate_a.sum()) == float(rate_b.sum()))
    return float(rate_a @ rate_b) / norm


def compare(graph, inputs: torch.Tensor, labels: torch.Tensor | None, dt_s: float, backend: str,
            progress=None) -> Comparison:
    """``backend`` against its reference in hwnas (:data:`hwnas.backends.registry.BACKENDS`) on the same inputs,
    layer by layer: Lava fixed-point against the bit-exact integer twin, Lava float against the float simulator
    (both pipelined), Norse against hwnas in Norse's step order."""
    from .registry import BACKENDS, Deployment, run_backend

    deployment = Deployment(graph, dt_s)
    reference = BACKENDS[backend].reference
    ours = run_backend(reference, deployment, inputs, progress)
    theirs = run_backend(backend, deployment, inputs, progress)
    net = deployment.network(BACKENDS[backend].timing)
    result = Comparison(backend.replace("_", "-"), inputs.shape[1], theirs.spikes[net.output].shape[1])
    result.output_spikes = theirs.spikes[net.output]
    result.output = net.output
    result.layers = layer_rows(ours.as_codes(), theirs.as_codes(), net.order)
    if labels is not None:
        result.accuracy = {"hwnas": accuracy(ours.output_current, labels),
                           "backend": accuracy(theirs.output_current, labels)}
    return result


def accuracy(current: np.ndarray, labels: torch.Tensor | None) -> float | None:
    """Share of samples whose label's summed output current is strictly the largest (a tie is wrong)."""
    if labels is None:
        return None
    return float(strictly_correct(torch.as_tensor(np.asarray(current, dtype=np.float64)), labels).double().mean())


def layer_rows(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], layers: list[str]) -> dict[str, dict]:
    """Per layer, from rasters (steps, samples, neurons): spikes per sample in both, relative difference of the
    counts, share of identical spike values, cosine similarity of per-neuron rates, share of coincident spikes,
    and whether the rasters are identical."""
    rows = {}
    for name in layers:
        a, b = ours[name], theirs[name]
        batch = a.shape[1]
        rows[name] = {
            "hwnas_spikes": float(a.sum()) / batch,
            "backend_spikes": float(b.sum()) / batch,
            "relative_error": float(abs(b.sum() - a.sum()) / max(float(a.sum()), 1.0)),
            "identical_share": float((a == b).float().mean()),
            "rate_cosine": rate_cosine(a, b),
            "coincident_share": coincident_share(a, b),
            "identical": bool(torch.equal(a, b)),
        }
    return rows


def coincident_share(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spikes present in both rasters over spikes present in either (1 when both are silent)."""
    a, b = a != 0, b != 0
    either = int((a | b).sum())
    return float(int((a & b).sum()) / either) if either else 1.0
