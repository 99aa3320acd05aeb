"""Row-sequential MNIST on a Xylo core (issue 34): the default search for xylo-audio3, its winner trained in Xylo's
integers, exported for rockpool and run in SynSense's XyloSim, next to a hand-designed network (a chain of dense
layers in the same skeleton) trained the same way.

Per row: test accuracy (the trained model on the whole test split), XyloSim's accuracy on ``--samples`` test samples,
whether the trained model, hwnas' twin of the core and XyloSim computed the same spikes on every layer, the hidden
neurons used (of 992), spikes and synaptic operations per sample, the energy per inference by the target's (proxy)
model and the wall time of each step on this machine. Prints a table and writes ``<work>/xylo.json``.

    python bench/xylo.py --data-dir D                        # full MNIST (tools/fetch-mnist D), 16x16 rows
    python bench/xylo.py --data-dir D --max-samples 2000     # a subset
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHAIN = "0-1:linear 0-2:zero 0-3:zero 1-2:linear 1-3:zero 2-3:linear"


def timed(step: str, seconds: dict, args: list[str]) -> None:
    """Run one hwnas command in a process of its own, recording its wall time under ``step``."""
    started = time.perf_counter()
    code = subprocess.run([sys.executable, "-m", "hwnas", *args], cwd=ROOT).returncode
    seconds[step] = round(time.perf_counter() - started, 1)
    if code != 0:
        raise SystemExit(f"hwnas {' '.join(args)} failed (exit {code})")


def deploy(folder: Path, args, seconds: dict) -> None:
    """Train, export and validate a run folder (steps already done are skipped)."""
    if not (folder / "model.pt").is_file():
        timed("train", seconds, ["train", str(folder), "--epochs", str(args.epochs), "--qat-epochs",
                                 str(args.qat_epochs), "--threads", str(args.threads), "--quiet"])
    if not (folder / "model.nir").is_file():
        timed("export", seconds, ["export", str(folder)])
    if not (folder / "validation.json").is_file():
        timed("validate", seconds, ["validate", str(folder), "--target", "xylo-audio3", "--samples",
                                    str(args.samples)])


def row(label: str, folder: Path, seconds: dict) -> dict:
    """The figures of a deployed run folder."""
    from hwnas.training.model_file import load_model

    trained = json.loads((folder / "train.json").read_text())
    validation = json.loads((folder / "validation.json").read_text())
    arch = load_model(folder / "model.pt")[1]
    pairs = validation["pairs"]
    return {"row": label, "cell": arch.key, "width": arch.width, "hidden_neurons": arch.hidden_neurons,
            "test_accuracy": trained["test_accuracy"], "xylosim_accuracy": validation["accuracy"].get("xylosim"),
            "xylosim_samples": validation["samples"],
            "identical": {key: pair["identical"] for key, pair in pairs.items()},
            "spikes_per_sample": trained["spikes_per_sample"], "synops_per_sample": trained["synops_per_sample"],
            "energy_uj": 1e6 * validation["energy"]["measured_j"], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder that holds MNIST/raw (tools/fetch-mnist DIR)")
    parser.add_argument("--max-samples", type=int, default=None, help="samples read per split (default: all)")
    parser.add_argument("--timesteps", type=int, default=16, help="rows per image (16: 16x16 MNIST)")
    parser.add_argument("--epochs", type=int, default=20, help="float epochs of every row (hwnas train's default)")
    parser.add_argument("--qat-epochs", type=int, default=5, help="QAT epochs in Xylo's integers")
    parser.add_argument("--samples", type=int, default=500, help="test samples run in XyloSim")
    parser.add_argument("--budget-minutes", type=float, default=None, help="the search's time budget")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default=str(ROOT / "runs" / "xylo"), help="run folders and results")
    args = parser.parse_args()

    from hwnas.arch.builder import build_network  # noqa: F401  (fails early without hwnas)
    from hwnas.arch.genotype import parse_cell_key
    from hwnas.io_utils import write_json_atomic
    from hwnas.training.model_file import load_model  # noqa: F401

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    header = (f"{time.strftime('%Y-%m-%d')}, commit {commit}, {platform.platform()}, threads {args.threads}; "
              f"mnist-rows at {args.timesteps} timesteps, --max-samples {args.max_samples}, --epochs {args.epochs}, "
              f"--qat-epochs {args.qat_epochs}, --budget-minutes {args.budget_minutes}")
    print(header, flush=True)
    rows = []
    search, seconds = work / "search", {}
    if not (search / "architecture.json").is_file():
        timed("search", seconds, ["search", "--target", "xylo-audio3", "--dataset", "mnist-rows", "--data-dir",
                                  args.data_dir, "--timesteps", str(args.timesteps), "--threads", str(args.threads),
                                  "--quiet", "--out", str(search)]
              + (["--max-samples", str(args.max_samples)] if args.max_samples else [])
              + (["--budget-minutes", f"{args.budget_minutes:g}"] if args.budget_minutes else []))
    deploy(search, args, seconds)
    rows.append(row("search", search, seconds))
    chain, seconds = work / "chain", {}
    if not (chain / "architecture.json").is_file():
        from hwnas.arch.imported import load_architecture

        chain.mkdir(parents=True, exist_ok=True)
        load_architecture(search / "architecture.json").with_cell(parse_cell_key(CHAIN)).save(
            chain / "architecture.json")
        report = json.loads((search / "report.json").read_text())
        write_json_atomic(chain / "report.json", {"config": report["config"],
                                                  "note": "hand-designed: a chain of dense layers (bench/xylo.py)"})
    deploy(chain, args, seconds)
    rows.append(row("chain (hand-designed)", chain, seconds))
    write_json_atomic(work / "xylo.json", {"header": header, "rows": rows})
    print(f"\n{'network':24s} {'test':>7s} {'XyloSim':>8s} {'equal':>6s} {'hidden':>7s} {'spikes':>8s} "
          f"{'synops':>9s} {'energy':>9s}  time")
    for r in rows:
        equal = "yes" if all(r["identical"].values()) else "NO"
        xylosim = f"{100 * r['xylosim_accuracy']:.2f}%" if r["xylosim_accuracy"] is not None else "-"
        print(f"{r['row']:24s} {100 * r['test_accuracy']:6.2f}% {xylosim:>8s} {equal:>6s} {r['hidden_neurons']:7d} "
              f"{r['spikes_per_sample']:8.0f} {r['synops_per_sample']:9.0f} {r['energy_uj']:7.2f}uJ  "
              + ", ".join(f"{k} {v:.0f} s" for k, v in r["seconds"].items()))
    print(f"\nwritten: {work / 'xylo.json'}")


if __name__ == "__main__":
    main()
