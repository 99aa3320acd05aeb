"""Real data (issue 30): the default search's winner next to hand-designed networks, all trained the same way,
estimated on Loihi 2 and run in Lava's fixed-point model.

Datasets: ``mnist`` (the real MNIST files, fetched once with ``tools/fetch-mnist DIR``: static digits,
rate-encoded over 8 steps) and ``saccades`` ("MNIST-saccades": the same digits seen by bench/scale.py's emulated
event camera making N-MNIST's three saccades, written here in N-MNIST's binary format and read as ``nmnist``; the
closest stand-in for N-MNIST that can be made without downloading it).

Rows, each trained with ``hwnas train`` (the same float epochs, then the same QAT epochs in Loihi's fixed-point
arithmetic), exported to NIR and validated in Lava:

* ``search``: ``hwnas search --target loihi2`` with its defaults on the same data, then its winner trained;
* ``search --width 16``: the same search at 16 channels where the pre-flight would choose the widths;
* ``search --stem-pool 2 --width 16``: the same search behind a stride-2 stem (the input average-pooled into the
  stem's convolution, as the NIR paper's CNN starts with a strided convolution), 16 channels;
* ``search --stem-pool 2 --width 8``: the same at 8 channels (the full-size default skeleton's widths);
* ``search --stem-pool auto``: the default search over each skeleton behind a stride-1 and a stride-2 stem (the
  same stages and head pooling, twice the widths), the energy term and the refinement's trainings choosing;
* ``search --strategy evolution``: AutoSNN's spike-aware evolution over a one-shot supernet instead of pruning;
* ``search under the chain's energy``: the default search asked for the most accurate network that costs no more
  than the hand-designed chain in the winner's skeleton (``--max-energy`` at the chain's energy per inference as
  ``hwnas estimate`` gives it untrained, as the search's rule estimates each candidate, and
  ``--refine-energy-weight 0``: the trainings choose by accuracy alone): what a user who wants to beat that
  baseline asks for;
* ``search --width-choices w,1.5w,2w under the chain's energy``: the same, choosing among the default winner's width
  w and 1.5 and 2 times it as well as among cells (``--width-choices``);
* ``chain (search skeleton)``: a hand-designed chain of three 3x3 convolutions per stage in the winner's own
  skeleton (widths, stages, head pooling): what the searched cell adds over the plainest cell;
* ``chain (widest fit)``: the same chain at the widest width (64, 32 or 16 channels) that fits Loihi 2's cores and
  whose training fits this machine's memory, with the fewest stages and the least pooling that fit: a larger
  network of the kind a researcher would write by hand;
* ``runner-ups``: each search row's last-rung runner-up, trained beside its winner (``hwnas train --pick K --out``)
  when the search says its rung could not separate the two (``signal.separation``): the point a user would train
  next, since short trainings cannot rank them;
* ``NIR paper CNN`` (``saccades`` only): the N-MNIST CNN of the NIR paper (its sinabs export, ``bench/data``),
  trained by ``hwnas train --from`` at the search's timesteps with the same epochs, once from new weights and once
  from its published weights: a network researchers designed and deployed on Loihi 2 by hand.

Per row: test accuracy (``hwnas train``), spikes and synaptic operations per sample, energy per inference and cores
on loihi2 (``hwnas estimate`` of the trained weights), Lava fixed-point accuracy on ``--lava-samples`` test samples
and whether it equals the trained model on every layer (``hwnas validate``), and each step's wall time on this
machine. Writes ``WORK/accuracy.json`` and ``WORK/accuracy_energy.png`` (test accuracy against energy per
inference: the trained rows, their front, and the search's refined candidates at their short-training accuracy).
Finished steps are not repeated when ``--work`` is given again. ``--seeds 1,2`` trains every row again with each
seed (``hwnas train --seed``, in a folder ``<row>-seed<N>``) and prints each row's spread of test accuracy and energy
over its seeds: how far one training's figures can be trusted when two rows are compared.

    tools/fetch-mnist data
    .venv/bin/python bench/accuracy.py --data-dir data [--datasets mnist,saccades] [--max-samples N]
                                       [--epochs 20] [--qat-epochs 5] [--lava-samples 500] [--work DIR]
                                       [--budget-minutes M] [--rows search-evolution,chain-skeleton,...]
                                       [--seeds 1,2]

The README's full-MNIST rows on 2 cores (each search in a 20-minute budget, the chain of its skeleton beside it):

    .venv/bin/python bench/accuracy.py --data-dir data --datasets mnist --budget-minutes 20 \
        --rows chain-skeleton --epochs 3 --qat-epochs 1 --work runs/accuracy-full
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


CHAIN = "0-1:conv3x3 0-2:zero 0-3:zero 1-2:conv3x3 1-3:zero 2-3:conv3x3"
PAPER_CNN = Path(__file__).resolve().parent / "data" / "nir_paper_cnn_sinabs.nir"  # see bench/data/README.md
# the search with other options: (folder, row label, options added to the default search)
# rows besides the default search's, by the name --rows takes
ROWS = ("search-w16", "search-stem2-w16", "search-stem2-w8", "search-stem-auto", "search-evolution",
        "search-under-chain", "search-widths-under-chain", "runner-ups", "chain-skeleton", "chain-widest",
        "paper-cnn")
SEARCH_VARIANTS = [("search-w16", "search --width 16", ["--width", "16"]),
                   ("search-stem2-w16", "search --stem-pool 2 --width 16", ["--stem-pool", "2", "--width", "16"]),
                   ("search-stem2-w8", "search --stem-pool 2 --width 8", ["--stem-pool", "2", "--width", "8"]),
                   ("search-stem-auto", "search --stem-pool auto", ["--stem-pool", "auto"]),
                   ("search-evolution", "search --strategy evolution", ["--strategy", "evolution"])]


def write_mnist_saccades(data_dir: Path, root: Path, max_samples: int | None) -> None:
    """MNIST's digits (the first ``max_samples`` of each split) as N-MNIST event files in tonic's layout."""
    from hwnas.data import load_dataset
    from scale import nmnist_file

    splits = load_dataset("mnist", data_dir, max_samples=max_samples)
    parts = {"Train": (np.concatenate([splits.train_x.numpy(), splits.val_x.numpy()]),
                       np.concatenate([splits.train_y.numpy(), splits.val_y.numpy()])),
             "Test": (splits.test_x.numpy(), splits.test_y.numpy())}
    rng = np.random.default_rng(0)
    for split, (images, labels) in parts.items():
        for index, (image, label) in enumerate(zip(images, labels)):
            folder = root / "NMNIST" / split / str(int(label))
            folder.mkdir(parents=True, exist_ok=True)
            frame = np.zeros((34, 34))
            frame[3:31, 3:31] = image[0]  # N-MNIST: the 28x28 digit shown inside the 34x34 sensor
            (folder / f"{index:05d}.bin").write_bytes(nmnist_file(frame, rng))


def timed(step: str, seconds: dict, args: list[str]) -> None:
    """Run one hwnas command in a process of its own (each step's memory is given back), recording its wall time
    under ``step``; a failure stops the bench."""
    started = time.perf_counter()
    code = subprocess.run([sys.executable, "-m", "hwnas", *args], cwd=Path(__file__).resolve().parents[1]).returncode
    seconds[step] = round(time.perf_counter() - started, 1)
    if code != 0:
        raise SystemExit(f"hwnas {' '.join(args)} failed (exit {code})")


def baseline_run(folder: Path, arch, search_config: dict) -> Path:
    """A run folder for a hand-designed architecture: what ``hwnas train`` reads from a search's folder."""
    from hwnas.io_utils import write_json_atomic

    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "architecture.json").is_file():
        arch.save(folder / "architecture.json")
        write_json_atomic(folder / "report.json", {"config": search_config, "note": "hand-designed (bench/accuracy.py)"})
    return folder


def widest_chain(template, target):
    """The chain cell in the widest skeleton (64, 32 or 16 channels in every stage, 2 or 3 stages, head pooling 1, 2
    or 4; the template's downsampling) in which it fits ``target`` and its training fits this machine's memory;
    None when none does."""
    from dataclasses import replace

    from hwnas.arch.footprint import check_network_memory
    from hwnas.arch.genotype import parse_cell_key
    from hwnas.errors import OptionError
    from hwnas.nas.preflight import check_skeleton
    from hwnas.training import TrainConfig

    cell = parse_cell_key(CHAIN)
    for width in (64, 32, 16):
        for stages in (2, 3):
            for head_pool in (1, 2, 4):
                arch = replace(template.with_cell(cell), width=width, widths=(), stages=stages, head_pool=head_pool)
                if check_skeleton(arch, target, None, cell):
                    continue
                try:  # and its training (hwnas train's batch, QAT in Loihi's arithmetic) fits this machine
                    check_network_memory(arch, TrainConfig().batch_size, True, "training", "", arithmetic="loihi")
                except OptionError:
                    continue
                return arch
    return None


def train_validate(run: Path, label: str, args, seconds: dict, train_from: list[str] = ()) -> dict:
    """Train (a search's or hand-designed folder, or with ``train_from`` the options of ``hwnas train --from``),
    export, estimate and validate one run folder; its row of the table."""
    if not (run / "train.json").is_file():
        timed("train", seconds, ["train", str(run), *train_from, "--epochs", str(args.epochs), "--qat-epochs",
                                 str(args.qat_epochs), "--quiet"])
    if not (run / "model.nir").is_file():
        timed("export", seconds, ["export", str(run), "--format", "nir"])
    if not (run / "estimate.json").is_file():
        timed("estimate", seconds, ["estimate", str(run), "--target", "loihi2", "--samples", "64", "--json",
                                    str(run / "estimate.json")])
    if not (run / "validation.json").is_file():
        timed("validate", seconds, ["validate", str(run), "--target", "loihi2", "--samples", str(args.lava_samples),
                                    "--skip", "lava_float,norse"])
    times = run / "bench_seconds.json"  # kept, so that a resumed bench still reports every step's time
    seconds = {**(json.loads(times.read_text()) if times.is_file() else {}), **seconds}
    times.write_text(json.dumps(seconds))
    trained = json.loads((run / "train.json").read_text())
    estimate = json.loads((run / "estimate.json").read_text())
    validation = json.loads((run / "validation.json").read_text())
    pair = validation["pairs"].get("trained/lava_fixed", {})
    from hwnas.arch.imported import is_imported, load_architecture

    arch = load_architecture(run / "architecture.json")
    skeleton = {"imported": arch.source} if is_imported(arch) else {
        "widths": list(arch.stage_widths), "stages": arch.stages, "head_pool": arch.head_pool,
        "downsample": arch.downsample, "stem_pool": arch.stem_pool}
    return {"row": label, "folder": str(run), "train_options": list(train_from), "cell": arch.key, "skeleton": skeleton,
            "test_accuracy": trained["test_accuracy"], "spikes_per_sample": trained["spikes_per_sample"],
            "synops_per_sample": trained["synops_per_sample"],
            "energy_uj": 1e6 * estimate["estimate"]["totals"]["energy_j"], "cores": estimate["mapping"]["cores"],
            "lava_accuracy": validation["accuracy"].get("lava_fixed"), "lava_samples": validation["samples"],
            "trained_equals_lava": bool(pair.get("identical")), "seconds": dict(seconds)}


def search_under(baseline: Path, run: Path, options: list[str], budget: list[str], args,
                 extra: tuple[str, ...] = ()) -> dict:
    """The default search limited to the energy per inference of ``baseline`` (a hand-designed run folder's
    architecture) untrained, as ``hwnas estimate`` gives it on 64 validation samples (the search's max-energy rule
    compares each candidate's untrained estimate, on its scoring batches), choosing among its trainings by accuracy
    alone (``extra``: more search options); trained and validated as every row."""
    import shutil

    seconds: dict = {}
    untrained = run.parent / f"{run.name}-baseline"  # a folder of its own: no model.pt, so the untrained weights
    estimate = untrained / "estimate.json"
    if not estimate.is_file():
        untrained.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(baseline / "architecture.json", untrained / "architecture.json")
        data = [value for flag, value in zip(options[::2], options[1::2]) if flag in ("--dataset", "--data-dir")]
        timed("estimate-baseline", seconds, ["estimate", str(untrained / "architecture.json"), "--dataset", data[0],
                                             "--data-dir", data[1], "--target", "loihi2", "--json", str(estimate)])
    limit = json.loads(estimate.read_text())["estimate"]["totals"]["energy_j"]
    if not (run / "architecture.json").is_file():
        timed("search", seconds, ["search", *options, *extra, "--max-energy", repr(limit), "--refine-energy-weight",
                                  "0", *budget, "--target", "loihi2", "--threads", str(args.threads), "--quiet",
                                  "--out", str(run)])
    label = " ".join(["search", *extra, f"--max-energy (the chain's {1e6 * limit:.1f} uJ)"])
    return train_validate(run, label, args, seconds)


def run_dataset(name: str, args, work: Path) -> dict:
    """Every row of one dataset."""
    from hwnas.arch.genotype import Architecture, parse_cell_key
    from hwnas.hw_models import load_target

    if name == "mnist":
        options = ["--dataset", "mnist", "--data-dir", str(args.data_dir)]
    else:
        events = work / "saccades-data"
        if not (events / "NMNIST" / "Test").is_dir():
            started = time.perf_counter()
            write_mnist_saccades(Path(args.data_dir), events, args.max_samples)
            print(f"MNIST-saccades written to {events} ({time.perf_counter() - started:.0f} s)", flush=True)
        options = ["--dataset", "nmnist", "--data-dir", str(events)]
    if args.max_samples:
        options += ["--max-samples", str(args.max_samples)]
    folder = work / name
    search = folder / "search"
    seconds: dict = {}
    budget = ["--budget-minutes", str(args.budget_minutes)] if args.budget_minutes else []
    if not (search / "architecture.json").is_file():
        timed("search", seconds, ["search", *options, *budget, "--target", "loihi2", "--threads", str(args.threads),
                                  "--quiet", "--out", str(search)])
    rows = [train_validate(search, "search", args, seconds)]  # every other row needs the search's winner
    print(f"{name}: search row done {rows[-1]['seconds']}", flush=True)
    for folder_name, label, extra in SEARCH_VARIANTS:  # the pipeline's variants, each measured as the default
        if folder_name not in args.rows:
            continue
        variant, variant_seconds = folder / folder_name, {}
        if not (variant / "architecture.json").is_file():
            timed("search", variant_seconds, ["search", *options, *extra, *budget, "--target", "loihi2", "--threads",
                                              str(args.threads), "--quiet", "--out", str(variant)])
        rows.append(train_validate(variant, label, args, variant_seconds))
        print(f"{name}: {label} done {rows[-1]['seconds']}", flush=True)
    winner = Architecture.load(search / "architecture.json")
    config = json.loads((search / "report.json").read_text())["config"]
    chain = baseline_run(folder / "chain-skeleton", winner.with_cell(parse_cell_key(CHAIN)), config) \
        if {"chain-skeleton", "search-under-chain", "search-widths-under-chain"} & set(args.rows) else None
    if "search-under-chain" in args.rows:
        rows.append(search_under(chain, folder / "search-under-chain", options, budget, args))
        print(f"{name}: {rows[-1]['row']} done {rows[-1]['seconds']}", flush=True)
    if "search-widths-under-chain" in args.rows:  # the same, choosing the width too: the winner's, 1.5 and 2 times
        widths = f"{winner.width},{winner.width * 3 // 2},{winner.width * 2}"
        rows.append(search_under(chain, folder / "search-widths-under-chain", options, budget, args,
                                 ("--width-choices", widths)))
        print(f"{name}: {rows[-1]['row']} done {rows[-1]['seconds']}", flush=True)
    if "runner-ups" in args.rows:
        for row in [row for row in rows if (Path(row["folder"]) / "search.csv").is_file()]:
            runner_up = train_runner_up(row, args)
            if runner_up is not None:
                rows.append(runner_up)
                print(f"{name}: {runner_up['row']} done {runner_up['seconds']}", flush=True)
    hand = [("chain (search skeleton)", chain)] if "chain-skeleton" in args.rows else []
    # the widest that fits depends on the memory free at the time: a resumed bench keeps the one it chose
    chosen = sorted(folder.glob("chain-widest-*/architecture.json"))
    widest = None
    if "chain-widest" in args.rows:
        widest = Architecture.load(chosen[0]) if chosen else widest_chain(winner, load_target("loihi2"))
    if widest is not None:
        hand.append((f"chain (widest fit, widths {list(widest.stage_widths)})",
                     baseline_run(folder / f"chain-widest-{widest.width}", widest, config)))
    for label, run in hand:
        rows.append(train_validate(run, label, args, {}))
        print(f"{name}: {label} done {rows[-1]['seconds']}", flush=True)
    if name == "saccades" and "paper-cnn" in args.rows:  # a published hand-designed network for N-MNIST, trained the same way (hwnas train --from)
        imported = ["--from", str(PAPER_CNN), "--dt", "1", *options, "--timesteps", str(winner.timesteps),
                    "--seed", str(config.get("seed", 0)), "--threads", str(config.get("threads", 1))]
        for folder_name, label, extra in (("paper-cnn-scratch", "NIR paper CNN (hwnas-trained from scratch)",
                                           ["--from-scratch"]),
                                          ("paper-cnn-finetuned", "NIR paper CNN (its weights, fine-tuned)", [])):
            rows.append(train_validate(folder / folder_name, label, args, {}, [*imported, *extra]))
            print(f"{name}: {label} done {rows[-1]['seconds']}", flush=True)
    # every row trained again with each other seed (not the search's own, which every row used), a folder of its own
    for seed in [seed for seed in dict.fromkeys(args.seeds) if seed != config.get("seed", 0)]:
        for row in [row for row in rows if "seed" not in row]:
            rows.append(train_with_seed(row, seed, args))
            print(f"{name}: {rows[-1]['row']} done {rows[-1]['seconds']}", flush=True)
    candidates = []
    csv_path = search / "search.csv"
    if csv_path.is_file():
        import csv

        with open(csv_path, newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("refine_accuracy") and row.get("refine_energy_j"):
                    candidates.append((float(row["refine_energy_j"]) * 1e6, float(row["refine_accuracy"])))
    return {"rows": rows, "candidates": candidates, "options": options, "spread": seed_spread(rows)}


def train_runner_up(row: dict, args) -> dict | None:
    """The last-rung runner-up of ``row``'s search, trained, estimated and validated like the row in the sibling
    folder ``<folder>-runner-up`` (``hwnas train --pick K --out``), when the search's rung could not separate it
    from the winner; None when it could (or the search predates ``signal.separation``)."""
    from hwnas.nas.front import point_of, refined_front
    from hwnas.run_folder import RunFolder

    search = RunFolder(row["folder"])
    separation = search.search_report().get("signal", {}).get("separation")
    if not separation or separation["separated"]:
        return None
    runner = separation["runner_up"]
    point = point_of(refined_front(search), runner)
    if point is None:  # search.csv lacks its refined figures: nothing --pick can train
        print(f"{row['row']}: the runner-up {runner['cell']} is not among the refined candidates; not trained")
        return None
    replica, seconds = search.path.parent / f"{search.path.name}-runner-up", {}
    if not (replica / "architecture.json").is_file():  # else train_validate finishes what an interrupted bench began
        timed("train", seconds, ["train", str(search.path), "--pick", str(point), "--out", str(replica), "--epochs",
                                 str(args.epochs), "--qat-epochs", str(args.qat_epochs), "--quiet"])
    trained = train_validate(replica, f"{row['row']} (runner-up)", args, seconds)
    return {**trained, "runner_up_of": row["row"]}


def train_with_seed(row: dict, seed: int, args) -> dict:
    """``row``'s network trained, estimated and validated again as ``hwnas train --seed seed`` gives it (other
    initial weights, except where the row fine-tunes published ones; another batch order and validation draw from the
    training files; the same test set), in the sibling folder ``<folder>-seed<seed>``."""
    import shutil

    original = Path(row["folder"])
    replica = original.parent / f"{original.name}-seed{seed}"
    if not row["train_options"]:  # a search's or hand-designed folder: what hwnas train reads from it
        replica.mkdir(parents=True, exist_ok=True)
        for name in ("architecture.json", "report.json"):
            if not (replica / name).is_file():
                shutil.copyfile(original / name, replica / name)
    trained = train_validate(replica, f"{row['row']} (seed {seed})", args, {},
                             [*row["train_options"], "--seed", str(seed)])  # the last --seed is the one hwnas reads
    return {**trained, "seed": seed, "of": row["row"]}


def seed_spread(rows: list[dict]) -> dict:
    """Per row trained with more than one seed: its test accuracy and energy per inference over the seeds (the
    row's own, then ``--seeds``): values, mean, lowest and highest."""
    spread = {}
    for row in [row for row in rows if "seed" not in row]:
        runs = [row] + [other for other in rows if other.get("of") == row["row"]]
        if len(runs) < 2:
            continue
        spread[row["row"]] = {key: {"values": values, "mean": float(np.mean(values)), "lowest": min(values),
                                    "highest": max(values)}
                              for key, values in (("test_accuracy", [r["test_accuracy"] for r in runs]),
                                                  ("energy_uj", [r["energy_uj"] for r in runs]))}
    return spread


def front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (energy, accuracy) points no other point dominates, by energy."""
    from hwnas.nas.front import pareto_front

    return pareto_front(points, lambda p: p[0], lambda p: p[1])


def plot(results: dict, path: Path) -> None:
    """Test accuracy against energy per inference on loihi2, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for axis, (name, result) in zip(axes[0], results.items()):
        if result["candidates"]:
            energy, accuracy = zip(*result["candidates"])
            axis.scatter(energy, [100 * a for a in accuracy], s=12, c="0.7",
                         label="search candidates (short training, validation)")
        rows = [row for row in result["rows"] if "seed" not in row]  # other seeds: small marks, off the front
        points = [(row["energy_uj"], row["test_accuracy"]) for row in rows]
        for row in rows:
            axis.scatter(row["energy_uj"], 100 * row["test_accuracy"], s=50, label=row["row"] + " (trained, test)")
        others = [row for row in result["rows"] if "seed" in row]
        if others:
            axis.scatter([row["energy_uj"] for row in others], [100 * row["test_accuracy"] for row in others], s=18,
                         marker="x", c="k", label="the rows trained with other seeds")
        kept = front(points)
        axis.plot([p[0] for p in kept], [100 * p[1] for p in kept], "k--", linewidth=1, label="front of trained rows")
        axis.set_xscale("log")
        axis.set_xlabel("energy per inference on loihi2 (uJ)")
        axis.set_ylabel("accuracy (%)")
        axis.set_title(name)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def table(results: dict) -> str:
    lines = []
    for name, result in results.items():
        lines.append(f"== {name} ({' '.join(result['options'])})")
        lines.append(f"{'row':56s}{'test acc':>9s}{'Lava acc':>10s}{'= Lava':>8s}{'spikes':>10s}{'synops':>12s}"
                     f"{'uJ':>9s}{'cores':>6s}  seconds")
        for row in result["rows"]:
            lava = f"{100 * row['lava_accuracy']:.2f}" if row["lava_accuracy"] is not None else "-"
            lines.append(f"{row['row']:56s}{100 * row['test_accuracy']:9.2f}{lava:>10s}"
                         f"{'yes' if row['trained_equals_lava'] else 'NO':>8s}{row['spikes_per_sample']:10.0f}"
                         f"{row['synops_per_sample']:12.0f}{row['energy_uj']:9.2f}{row['cores']:6d}  "
                         + ", ".join(f"{k} {v:.0f}" for k, v in row["seconds"].items()))
        for row in result["rows"]:
            lines.append(f"{row['row']}: {row['cell']}, {row['skeleton']}")
        for label, spread in result.get("spread", {}).items():
            accuracy, energy = spread["test_accuracy"], spread["energy_uj"]
            lines.append(f"{label} over {len(accuracy['values'])} seeds: test accuracy mean "
                         f"{100 * accuracy['mean']:.2f}% ({100 * accuracy['lowest']:.2f}-{100 * accuracy['highest']:.2f}), "
                         f"energy mean {energy['mean']:.2f} uJ ({energy['lowest']:.2f}-{energy['highest']:.2f})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder that holds MNIST/raw (tools/fetch-mnist DIR)")
    parser.add_argument("--datasets", default="mnist,saccades", help="comma-separated: mnist, saccades")
    parser.add_argument("--max-samples", type=int, default=None,
                        help="samples read per split (default: all; the 2-core budget needs fewer)")
    parser.add_argument("--epochs", type=int, default=20, help="float epochs of every row (hwnas train's default)")
    parser.add_argument("--qat-epochs", type=int, default=5, help="QAT epochs of every row (hwnas train's default)")
    parser.add_argument("--lava-samples", type=int, default=500, help="test samples run in Lava fixed point")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="give every search this time budget (hwnas search --budget-minutes): the full-size rows "
                             "on 2 cores")
    parser.add_argument("--rows", default=",".join(ROWS),
                        help="comma-separated rows to run besides the default search's (which the others need): "
                             "%(default)s")
    parser.add_argument("--seeds", default="",
                        help="comma-separated seeds besides the search's: train every row again with each (hwnas train "
                             "--seed: other initial weights, except the fine-tuned paper CNN's, batch order and "
                             "validation draw; the same test set) and print each row's spread")
    parser.add_argument("--work", default="runs/accuracy", help="run folders, data and results (default: %(default)s)")
    args = parser.parse_args()
    args.rows = [row for row in args.rows.split(",") if row]
    try:
        args.seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError:
        parser.error(f"--seeds takes comma-separated whole numbers, got '{args.seeds}'")
    if any(seed < 0 for seed in args.seeds):
        parser.error(f"--seeds must be 0 or more, got '{','.join(map(str, args.seeds))}'")
    unknown = sorted(set(args.rows) - set(ROWS))
    if unknown:
        parser.error(f"unknown row '{unknown[0]}' (choose from {', '.join(ROWS)})")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    header = (f"{time.strftime('%Y-%m-%d')}, commit {commit}, {platform.platform()}, {os.cpu_count()} CPUs; "
              f"--max-samples {args.max_samples}, --epochs {args.epochs}, --qat-epochs {args.qat_epochs}, "
              f"--lava-samples {args.lava_samples}, --budget-minutes {args.budget_minutes}, --rows {','.join(args.rows)}"
              + (f", --seeds {','.join(map(str, args.seeds))}" if args.seeds else ""))
    print(header, flush=True)
    results = {name: run_dataset(name, args, work) for name in args.datasets.split(",")}
    (work / "accuracy.json").write_text(json.dumps({"header": header, "results": results}, indent=1))
    plot(results, work / "accuracy_energy.png")
    print(header)
    print(table(results))
    print(f"written: {work / 'accuracy.json'}, {work / 'accuracy_energy.png'}")


if __name__ == "__main__":
    main()
