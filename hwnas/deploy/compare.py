"""Running the same samples through hwnas' simulator and another backend, layer by layer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.splits import DatasetSplits, encode_batch
from ..errors import OptionError
from ..export.nir import READOUT, load


@dataclass
class Comparison:
    """Per layer spikes per sample in hwnas and the backend, and how many spike values coincide."""

    backend: str
    samples: int
    steps: int
    layers: dict[str, dict] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"backend": self.backend, "samples": self.samples, "steps": self.steps, "layers": self.layers,
                "accuracy": self.accuracy}


def inputs_from(splits: DatasetSplits | None, samples: int, timesteps: int, encoding: str, seed: int,
                array: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Network input (T, B, ...) from the test split (with labels) or from a given array (time first)."""
    if array is not None:
        if array.ndim < 3:
            raise OptionError(f"--input must be an array (time, batch, ...), got shape {list(array.shape)}")
        return torch.as_tensor(array, dtype=torch.float32), None
    x, y = splits.split("test")
    x, y = x[:samples], y[:samples]
    generator = torch.Generator().manual_seed(seed)
    return encode_batch(x, splits.kind, timesteps, encoding, generator), y


def compare_with_norse(graph, inputs: torch.Tensor, labels: torch.Tensor | None, dt_s: float) -> Comparison:
    """hwnas (zero-delay, as Norse runs) versus Norse on the same inputs."""
    from .norse import run_norse

    net = load(graph, dt_s=dt_s, timing="zero-delay")
    if tuple(inputs.shape[2:]) != net.input_shape:
        raise OptionError(f"inputs have shape {list(inputs.shape[2:])} per step, the graph expects {list(net.input_shape)}")
    with torch.no_grad():
        ours = net(inputs, record=True)
    readout_source = next(src for src, dst in graph.edges if dst == READOUT) if READOUT in graph.nodes else net.output
    feeding = [src for src, dst in graph.edges if dst == readout_source]
    theirs = run_norse(graph, inputs, dt_s, list(net.populations), feeding[0] if len(feeding) == 1 else readout_source)
    batch = inputs.shape[1]
    result = Comparison("norse", batch, inputs.shape[0])
    for name in net.order:
        a, b = ours.codes[name], theirs["codes"][name]
        result.layers[name] = {
            "hwnas_spikes": float(a.sum()) / batch,
            "backend_spikes": float(b.sum()) / batch,
            "relative_error": float(abs(b.sum() - a.sum()) / max(float(a.sum()), 1.0)),
            "identical_share": float((a == b).float().mean()),
        }
    if labels is not None:
        result.accuracy = {"hwnas": float((ours.logits.argmax(1) == labels).float().mean()),
                           "backend": float((theirs["logits"].argmax(1) == labels).float().mean())}
    return result
