"""A trained network on disk: ``model.pt`` (the checkpoint) and ``train.json`` (its figures), written and read
here only, by ``hwnas train``, ``hwnas train --from`` and ``hwnas compress`` alike.

``model.pt`` is a dict saved with :func:`torch.save` and read with ``weights_only=True``: ``format``
(``hwnas.model``), ``version``, ``architecture`` (the dict of :class:`~hwnas.arch.genotype.Architecture` or of
:class:`~hwnas.arch.imported.ImportedArchitecture`), ``state_dict``, ``folded`` (batch-norm folded), ``weight_bits``,
``arithmetic`` (``float`` or ``loihi``), ``spiking_input``; an imported network adds its source ``graph`` (a uint8
tensor), a compressed one ``layer_weight_bits``, ``masks`` and ``compressed``. Files without ``version`` are
version 1's, as written before it was recorded.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from ..arch.builder import build_network
from ..arch.imported import architecture_from_dict, is_imported
from ..errors import ArchitectureError, OptionError, first_line
from ..formats.trainable import graph_from_tensor, trainable_network
from ..io_utils import write_bytes_atomic, write_json_atomic
from ..metrics import encoded_input_is_binary, neurobench_metrics
from ..run_folder import MODEL, RunFolder
from ..sim.quantize import WeightFormat

MODEL_FORMAT = "hwnas.model"
MODEL_VERSION = 1


def checkpoint_of(net, arch, weight_bits: int | None, **extra) -> dict:
    """The ``model.pt`` dict of a trained network (``extra``: the entries of imported or compressed models)."""
    return {"format": MODEL_FORMAT, "version": MODEL_VERSION, "architecture": arch.to_dict(),
            "state_dict": net.state_dict(), "folded": net.is_folded, "weight_bits": weight_bits,
            "arithmetic": net.arithmetic, "spiking_input": net.spiking_input, **extra}


def write_model(folder: RunFolder, checkpoint: dict) -> None:
    """Write ``checkpoint`` as the folder's ``model.pt``, atomically."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_bytes_atomic(folder.model, buffer.getvalue())


# train.json's keys in the order they are written (others follow, as given)
TRAIN_REPORT_ORDER = ("target", "timing", "dataset", "device", "config", "seed", "quantized", "weight_bits",
                      "layer_weight_bits", "arithmetic", "compressed", "val_accuracy", "test_accuracy",
                      "spikes_per_sample", "synops_per_sample", "neurobench", "per_layer", "seconds", "history", "files")


def train_report(net, arch, splits, activity, target, **fields) -> dict:
    """``train.json``: the entries every trained network has (target, data, arithmetic, test activity, NeuroBench's
    metrics, files) and ``fields`` (accuracies, configuration, history, ...; they win), in
    :data:`TRAIN_REPORT_ORDER`."""
    totals = activity.totals_per_sample()
    report = {"target": target.name, "timing": arch.timing, "dataset": splits.summary(),
              "arithmetic": net.arithmetic, "spikes_per_sample": totals["spikes"], "synops_per_sample": totals["synops"],
              "neurobench": neurobench_metrics(net, activity, encoded_input_is_binary(splits.test_x, splits.kind,
                                                                                        arch.encoding)),
              "per_layer": activity.per_sample(), "files": {"model": MODEL}, **fields}
    ordered = {key: report[key] for key in TRAIN_REPORT_ORDER if key in report}
    return {**ordered, **{key: value for key, value in report.items() if key not in ordered}}


def write_train_report(folder: RunFolder, report: dict) -> None:
    """Write the folder's ``train.json``, atomically."""
    write_json_atomic(folder.train_report, report)


def load_model(path: str | Path, device: torch.device | None = None):
    """Rebuild a trained network from ``model.pt``: (network in evaluation mode, architecture, checkpoint dict);
    a missing, foreign, newer or inconsistent file is one :class:`OptionError` line."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise OptionError(f"no trained model at {path} (run hwnas train first)") from None
    except Exception as exc:  # a truncated or foreign file fails in many ways inside torch.load
        raise OptionError(f"cannot read model {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != MODEL_FORMAT:
        raise OptionError(f"{path} is not an hwnas model")
    version = checkpoint.get("version", 1)
    if not isinstance(version, int) or version > MODEL_VERSION:
        raise OptionError(f"{path} is an hwnas model of version {version}; this hwnas reads up to version "
                          f"{MODEL_VERSION}: update hwnas")
    try:
        arch = architecture_from_dict(checkpoint.get("architecture"))
    except ArchitectureError as exc:
        raise OptionError(f"{path}: {exc}") from None
    if is_imported(arch):  # another tool's graph, kept in the checkpoint
        if not isinstance(checkpoint.get("graph"), torch.Tensor):
            raise OptionError(f"{path} holds an imported network without its graph")
        net = trainable_network(graph_from_tensor(checkpoint["graph"]), arch.dt_s, arch.timing)
    else:
        net = build_network(arch)
    if checkpoint["folded"]:
        net.fold_batchnorm()
    if checkpoint.get("arithmetic") == "xylo":  # Xylo's int8 weights: scaled per forward from the weights themselves
        net.set_arithmetic("xylo")
    elif checkpoint.get("weight_bits"):
        net.set_weight_format(WeightFormat(bits=checkpoint["weight_bits"]))
        # models trained before the fixed-point fine-tuning record no arithmetic: they ran in float
        if checkpoint.get("arithmetic", "float") == "loihi":
            net.set_arithmetic("loihi", WeightFormat(bits=checkpoint["weight_bits"]),
                               checkpoint.get("spiking_input", True))
    if checkpoint.get("layer_weight_bits"):  # compressed: connections with bits of their own
        try:
            net.set_layer_weight_formats({key: WeightFormat(bits=bits)
                                          for key, bits in checkpoint["layer_weight_bits"].items()})
        except (KeyError, ValueError, TypeError) as exc:
            raise OptionError(f"{path} records weight bits its architecture cannot take: {first_line(exc)}") from None
    state = checkpoint["state_dict"]
    # a model trained before cells were canonical holds the weights of populations that could not reach the
    # output; the network rebuilt from the same architecture no longer has them, and they changed nothing
    known = set(net.state_dict())
    try:
        net.load_state_dict({key: value for key, value in state.items() if key in known})
    except RuntimeError as exc:
        raise OptionError(f"{path} does not fit its architecture: {first_line(exc)}") from None
    net.eval()
    return net.to(device or torch.device("cpu")), arch, checkpoint
