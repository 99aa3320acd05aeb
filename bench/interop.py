"""NIR interoperability: which producer's graph each consumer loads, and how closely it agrees; and (``--events``)
other tools' networks fine-tuned by hwnas for Loihi 2.

Producers: hwnas' own profile, hwnas' portable profile (``--profile portable``) and snnTorch 1.0
(``export_to_nir``). Consumers: hwnas' simulator, Lava fixed-point and float (Loihi 2 model), Norse (through
hwnas' deploy backend) and snnTorch (``import_from_nir``). Agreement is the worst layer's spike-count error
against the producer's own simulation in the consumer's timing (hwnas' zero-delay simulator for Norse and
snnTorch; the integer twin for Lava fixed-point, the float simulator for Lava float). Prints one markdown table.

With ``--events DIR`` (N-MNIST-format recordings in tonic's layout, e.g. bench/accuracy.py's MNIST-saccades in
``WORK/saccades-data``) a second table: the NIR paper's N-MNIST CNN (sinabs export, ``bench/data``) and a
convolutional network trained here in snnTorch (its own BPTT loop) and exported with ``export_to_nir``, each run
as read in Lava fixed-point (``hwnas deploy``), then fine-tuned with ``hwnas train --from`` (float epochs, then
fixed-point epochs), exported and validated in Lava: accuracy before and after on the same class-balanced test
samples, trained = Lava fixed-point on every layer, energy and cores on loihi2, wall times.

    .venv/bin/python bench/interop.py [--samples 16]
    .venv/bin/python bench/interop.py --events runs/accuracy/saccades-data [--timesteps 30] [--epochs 3]
                                      [--qat-epochs 1] [--lava-samples 500] [--work runs/interop]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from hwnas.arch.builder import build_network  # noqa: E402
from hwnas.arch.genotype import Architecture, parse_cell_key  # noqa: E402
from hwnas.data import load_dataset  # noqa: E402
from hwnas.data.splits import encode_batch  # noqa: E402
from hwnas.backends.compare import compare  # noqa: E402
from hwnas.formats.nir import load, to_nir  # noqa: E402
from hwnas.formats.portable import PORTABLE_DT_S, to_portable_nir  # noqa: E402
from hwnas.sim.quantize import WeightFormat  # noqa: E402
from hwnas.sim.seeding import build_seeded  # noqa: E402
from hwnas.training import train_epochs  # noqa: E402

CHAIN = "0-1:conv3x3 0-2:zero 0-3:zero 1-2:conv3x3 1-3:zero 2-3:conv3x3"


def hwnas_network(samples: int):
    """A chain cell (max-pool downsampling), trained 2 epochs on digits, 8-bit weights; and test inputs."""
    splits = load_dataset("digits", None, 4, 0)
    arch = Architecture(cell=parse_cell_key(CHAIN), input_shape=(1, 8, 8), num_classes=10, width=8, timesteps=4,
                        timing="zero-delay")
    net = build_seeded(lambda: build_network(arch), 0, arch.key)
    train_epochs(net, arch, splits, 2, 0.01, 64, 0)
    net.eval()
    net.fold_batchnorm()
    net.set_weight_format(WeightFormat(bits=8))
    x = encode_batch(splits.test_x[:samples], "static", 4, "rate", torch.Generator().manual_seed(0))
    return net, arch, x


def snntorch_network():
    """A convolutional snnTorch network (reset to zero, per-neuron beta and threshold, a strided convolution)."""
    import snntorch as snn

    def leaky(*shape, **options):
        return snn.Leaky(beta=torch.full(shape, 0.75), threshold=torch.ones(shape), reset_mechanism="zero",
                         init_hidden=True, **options)

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), leaky(8, 8, 8),
                              torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), leaky(8, 4, 4), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 4 * 4, 10), leaky(10, output=True))
    with torch.no_grad():
        for index in (0, 2, 5):
            net[index].weight.mul_(3.0)
    return net


def norse_network():
    """A convolutional Norse network (LIF box neurons, a strided convolution; Norse 1.1 cannot export Flatten)."""
    import norse.torch as norse

    p = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(250.0), v_th=torch.tensor(0.5), v_leak=torch.tensor(0.0),
                               v_reset=torch.tensor(0.0))
    torch.manual_seed(0)
    net = norse.SequentialState(torch.nn.Conv2d(1, 8, 3, padding=1), norse.LIFBoxCell(p),
                                torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), norse.LIFBoxCell(p))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.mul_(4.0)
    return net


def norse_counts(net, x) -> list[float]:
    """Spikes per sample of each of the Norse network's two neuron layers (the whole batch at once)."""
    counts = [0.0, 0.0]
    with torch.no_grad():
        state = None
        for t in range(x.shape[0]):
            out = x[t]
            states = [] if state is None else state
            new_states = []
            layer = 0
            for index, module in enumerate(net):
                if isinstance(module, torch.nn.Conv2d):
                    out = module(out)
                else:
                    out, cell_state = module(out, states[index] if states else None)
                    counts[layer] += float(out.sum()) / x.shape[1]
                    layer += 1
                    new_states.append(cell_state)
                    continue
                new_states.append(None)
            state = new_states
    return counts


def snntorch_counts(module, x, step) -> list[float]:
    """Spikes per sample of each snnTorch neuron layer, one sample at a time (state reset between samples)."""
    import snntorch as snn
    from snntorch import utils

    layers = [m for m in module.modules() if isinstance(m, snn.SpikingNeuron)]
    totals = [0.0] * len(layers)
    record = {}
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: record.__setitem__(k, o[0] if isinstance(o, tuple) else o))
             for k, m in enumerate(layers)]
    with torch.no_grad():
        for b in range(x.shape[1]):
            utils.reset(module)
            state = None
            for t in range(x.shape[0]):
                state = step(module, x[t, b:b + 1], state)
                totals = [total + float(record[k].sum()) for k, total in enumerate(totals)]
    for hook in hooks:
        hook.remove()
    return [total / x.shape[1] for total in totals]


def worst_error(reference: list[float], measured: list[float]) -> float:
    """The largest relative difference of matched layer counts (sorted: names differ between tools)."""
    pairs = zip(sorted(reference), sorted(measured))
    return max(abs(b - a) / max(a, 1.0) for a, b in pairs)


def cell(function) -> str:
    """A table cell: the worst layer error, or why the consumer cannot load the graph (first line)."""
    try:
        return f"loads, worst layer {100 * function():.2f}%"
    except Exception as exc:  # a consumer's refusal is the result, whatever it raises
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"no: {type(exc).__name__}: {message[:70]}"


def hwnas_consumers(graph, x, dt_s: float, reference: list[float]) -> dict[str, str]:
    """hwnas' simulator, Lava fixed and float, Norse, each against its reference in hwnas."""
    row = {"hwnas": cell(lambda: worst_error(reference, [float(c.sum()) / x.shape[1] for c in
                                                          load(graph, dt_s, "zero-delay")(x, record=True).codes
                                                          .values()]))}
    for backend in ("lava_fixed", "lava_float", "norse"):
        row[backend] = cell(lambda backend=backend: max(r["relative_error"] for r in
                                                        compare(graph, x, None, dt_s, backend).layers.values()))
    return row


def measure(samples: int) -> tuple[dict, object]:
    """Every producer's graph in every consumer: the table's rows, and the hwnas network's architecture."""
    import nir
    from norse.torch.utils.export_nir import to_nir as norse_to_nir
    from snntorch.export_nir import export_to_nir
    from snntorch.import_nir import import_from_nir

    net, arch, x = hwnas_network(samples)
    with torch.no_grad():
        own = [float(c.sum()) / x.shape[1] for c in net(x, record=True).codes.values()]
    rows = {}
    for label, graph, dt_s in (("hwnas (hwnas profile)", to_nir(net, arch), 1e-3),
                               ("hwnas (portable profile)", to_portable_nir(net, arch), PORTABLE_DT_S)):
        row = hwnas_consumers(graph, x, dt_s, own)
        row["snnTorch"] = cell(lambda graph=graph: worst_error(
            own, snntorch_counts(import_from_nir(nir.NIRGraph(nodes=dict(graph.nodes), edges=list(graph.edges),
                                                              metadata=dict(graph.metadata))),
                                 x, lambda m, xt, s: m(xt, s)[1])))
        rows[label] = row
    snn_net = snntorch_network()
    graph = export_to_nir(snn_net, torch.zeros(1, 1, 8, 8), ignore_dims=[0])
    xs = torch.bernoulli(torch.full((6, samples, 1, 8, 8), 0.4), generator=torch.Generator().manual_seed(1))
    row = hwnas_consumers(graph, xs, PORTABLE_DT_S, snntorch_counts(snn_net, xs, lambda m, xt, s: m(xt)))
    row["snnTorch"] = "its own simulation"
    rows["snnTorch 1.0 (export_to_nir)"] = row
    norse_net = norse_network()
    graph = norse_to_nir(norse_net, torch.zeros(1, 1, 8, 8))
    # Norse 1.1 writes tau = dt / tau_mem_inv: read at dt^2 (its default dt is 1e-3)
    norse_own = norse_counts(norse_net, xs)
    row = hwnas_consumers(graph, xs, 1e-6, norse_own)
    row["norse"] = "its own simulation"
    row["snnTorch"] = cell(lambda: worst_error(norse_own, snntorch_counts(import_from_nir(graph), xs,
                                                                          lambda m, xt, s: m(xt, s)[1])))
    rows["Norse 1.1 (to_nir)"] = row
    # pip refuses sinabs 3.1.3 beside nir 1.0.8 (ResolutionImpossible): sinabs pins nir <= 1.0.4
    rows["sinabs 3.1.3"] = {"hwnas": "not installable beside nir 1.0.8 (sinabs pins nir <= 1.0.4)"}
    return rows, arch


PAPER_CNN = ROOT / "bench" / "data" / "nir_paper_cnn_sinabs.nir"


def snntorch_events_network(timesteps: int):
    """A convolutional snnTorch network for 2 x 34 x 34 event frames (strided convolutions, Leaky neurons reset to
    zero, biases as snnTorch's layers have them by default)."""
    import snntorch as snn
    from snntorch import surrogate

    def leaky(*shape, **options):
        return snn.Leaky(beta=torch.full(shape, 0.9), threshold=torch.ones(shape), reset_mechanism="zero",
                         init_hidden=True, spike_grad=surrogate.fast_sigmoid(), **options)

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 8, 5, stride=2, padding=1), leaky(8, 16, 16),
                               torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), leaky(16, 8, 8), torch.nn.Flatten(),
                               torch.nn.Linear(16 * 8 * 8, 10), leaky(10, output=True))


def snntorch_trained(events: Path, work: Path, timesteps: int, epochs: int) -> tuple[Path, float]:
    """The snnTorch network trained in snnTorch (BPTT, Adam, cross-entropy on output spike counts) on the events'
    training split, exported to ``work/snntorch_events.nir``; and the training's wall time."""
    import nir
    import torch.nn.functional as F
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    path = work / "snntorch_events.nir"
    if path.is_file():
        return path, float("nan")
    started = time.perf_counter()
    splits = load_dataset("nmnist", events, timesteps, 0)
    net = snntorch_events_network(timesteps)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    x, y = splits.split("train")
    for epoch in range(epochs):
        order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(epoch))
        for start in range(0, x.shape[0], 64):
            index = order[start:start + 64]
            frames = encode_batch(x[index], splits.kind, timesteps, "rate", torch.Generator().manual_seed(epoch))
            utils.reset(net)
            counts = sum(net(frames[t])[0] for t in range(timesteps))
            loss = F.cross_entropy(counts, y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"snnTorch epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}", file=sys.stderr, flush=True)
    net.eval()
    utils.reset(net)
    graph = export_to_nir(net, torch.zeros(1, 2, 34, 34), ignore_dims=[0])
    nir.write(path, graph)
    return path, time.perf_counter() - started


def finetune_rows(args) -> list[dict]:
    """The second table's rows (see the module docstring); finished steps are kept in ``--work`` and not repeated."""
    from accuracy import timed

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    snn_path, snn_seconds = snntorch_trained(Path(args.events), work, args.timesteps, args.snntorch_epochs)
    rows = []
    for label, graph, dt in (("NIR paper CNN (sinabs export)", PAPER_CNN, "1"),
                             (f"snnTorch CNN (trained {args.snntorch_epochs} epochs in snnTorch)", snn_path,
                              str(PORTABLE_DT_S))):
        run = work / graph.stem
        seconds = {"snntorch_training": round(snn_seconds, 1)} if graph == snn_path and snn_seconds == snn_seconds else {}
        data = ["--dataset", "nmnist", "--data-dir", str(args.events)]
        before = work / f"{graph.stem}_before.json"
        if not before.is_file():
            timed("as_read_in_lava", seconds, ["deploy", str(graph), "--backend", "lava", *data, "--samples",
                                               str(args.lava_samples), "--steps", str(args.timesteps), "--dt", dt,
                                               "--save", str(before)])
        if not (run / "train.json").is_file():
            timed("train", seconds, ["train", str(run), "--from", str(graph), "--dt", dt, *data, "--timesteps",
                                     str(args.timesteps), "--epochs", str(args.epochs), "--qat-epochs",
                                     str(args.qat_epochs), "--quiet"])
        if not (run / "model.nir").is_file():
            timed("export", seconds, ["export", str(run)])
        if not (run / "estimate.json").is_file():
            timed("estimate", seconds, ["estimate", str(run), "--samples", "64", "--json", str(run / "estimate.json")])
        if not (run / "validation.json").is_file():
            timed("validate", seconds, ["validate", str(run), "--samples", str(args.lava_samples), "--skip",
                                        "lava_float,norse"])
        times = run / "bench_seconds.json"
        seconds = {**(json.loads(times.read_text()) if times.is_file() else {}), **seconds}
        times.write_text(json.dumps(seconds))
        read = json.loads(before.read_text())
        trained = json.loads((run / "train.json").read_text())
        estimate = json.loads((run / "estimate.json").read_text())
        validation = json.loads((run / "validation.json").read_text())
        rows.append({"row": label, "lava_before": read["accuracy"]["backend"],
                     "lava_after": validation["accuracy"].get("lava_fixed"), "samples": validation["samples"],
                     "test_accuracy": trained["test_accuracy"],
                     "trained_equals_lava": bool(validation["pairs"]["trained/lava_fixed"]["identical"]),
                     "energy_uj": 1e6 * estimate["estimate"]["totals"]["energy_j"],
                     "cores": estimate["mapping"]["cores"], "seconds": seconds})
    return rows


def print_finetune(rows: list[dict], args) -> None:
    """The second table, markdown."""
    print("| network | Lava fixed-point as read | after hwnas train --from | trained = Lava | energy (uJ) | cores "
          "| wall time (s) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['row']} | {100 * row['lava_before']:.2f}% | {100 * row['lava_after']:.2f}% | "
              f"{'identical' if row['trained_equals_lava'] else 'DIFFERS'} | {row['energy_uj']:.1f} | {row['cores']} | "
              + ", ".join(f"{step} {value:.0f}" for step, value in row["seconds"].items()) + " |")
    print(f"\n{rows[0]['samples']} class-balanced test samples of {args.events}, {args.timesteps} steps each; "
          f"fine-tuning {args.epochs} float + {args.qat_epochs} fixed-point epochs; loihi2; "
          f"{time.strftime('%Y-%m-%d')}, commit {commit()}, {platform.platform()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}")


def commit() -> str:
    """The project's commit (with + when the tree has changes)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout
    return head.strip() + ("+" if dirty.strip() else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--events", default=None, help="N-MNIST-format recordings: fine-tune other tools' networks")
    parser.add_argument("--timesteps", type=int, default=30, help="steps per sample for the fine-tuning table")
    parser.add_argument("--epochs", type=int, default=3, help="float fine-tuning epochs")
    parser.add_argument("--qat-epochs", type=int, default=1, help="fixed-point fine-tuning epochs")
    parser.add_argument("--snntorch-epochs", type=int, default=2, help="epochs of the snnTorch network's own training")
    parser.add_argument("--lava-samples", type=int, default=500, help="test samples run in Lava, before and after")
    parser.add_argument("--work", default="runs/interop", help="folder of the fine-tuning runs (resumable)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.events:
        rows = finetune_rows(args)
        Path(args.work, "interop_finetune.json").write_text(json.dumps(rows, indent=1))
        print_finetune(rows, args)
        return 0
    with contextlib.redirect_stdout(io.StringIO()):  # the readers print warnings and arrays
        rows, arch = measure(args.samples)
    consumers = ["hwnas", "lava_fixed", "lava_float", "norse", "snnTorch"]
    print("| producer \\ consumer | " + " | ".join(consumers) + " |")
    print("|---" * (len(consumers) + 1) + "|")
    for label, row in rows.items():
        print(f"| {label} | " + " | ".join(row.get(name, "-") for name in consumers) + " |")
    print(f"\n{args.samples} samples; hwnas network: {arch.key} (trained 2 epochs, 8-bit); error per layer is "
          f"|count - reference| / reference. numpy {np.__version__}, torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
