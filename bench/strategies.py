"""The search strategies side by side: random (SNASNet), prune (LightSNN) and evolution (AutoSNN) on loihi2.

For each dataset, strategy and seed: the default ``hwnas search --target loihi2 --strategy S --seed N`` (its
refinement included), then ``hwnas train`` of the winner (--epochs, 8-bit QAT), then the trained winner's test
accuracy, spikes per inference and energy per inference on loihi2 (``hwnas estimate`` on 64 validation samples).
Prints one row per run and a table of means per strategy.

    .venv/bin/python bench/strategies.py [--datasets digits,nmnist] [--seeds 0,1] [--epochs 20] [--out DIR]

``nmnist`` is written in N-MNIST's own format from the digits by ``bench/scale.py``'s writer (``--samples``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hwnas.nas.runner import SearchConfig, run_search  # noqa: E402

STRATEGIES = ("random", "prune", "evolution")


def trained_figures(run_dir: Path, epochs: int) -> dict:
    """Train the winner of ``run_dir`` and measure it: test accuracy, spikes and energy per inference."""
    from hwnas.data import load_dataset
    from hwnas.hw_models import load_target
    from hwnas.hw_models.estimate import encode_samples, estimate_network
    from hwnas.training import TrainConfig, train_run

    outcome = train_run(run_dir, TrainConfig(epochs=epochs))
    arch, report = outcome.architecture, outcome.report
    dataset, data_dir, max_samples = _dataset_of(run_dir)
    splits = load_dataset(dataset, data_dir, arch.timesteps, 0, max_samples)
    x = encode_samples(splits, "val", 64, arch.timesteps, arch.encoding, 0)
    estimate, mapping = estimate_network(outcome.network.cpu(), load_target("loihi2"), x)
    return {"test_accuracy": report["test_accuracy"], "spikes": report["spikes_per_sample"],
            "energy_uj": 1e6 * estimate.to_dict()["totals"]["energy_j"], "cores": len(mapping.cores)}


def _dataset_of(run_dir: Path) -> tuple[str, str | None, int | None]:
    from hwnas.run_folder import RunFolder

    config = RunFolder(run_dir).search_config()
    return config["dataset"], config.get("data_dir"), config.get("max_samples")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=20, help="hwnas train --epochs of each winner")
    parser.add_argument("--samples", type=int, default=1000, help="digits written as N-MNIST files")
    parser.add_argument("--max-samples", type=int, default=600, help="--max-samples for the event data")
    parser.add_argument("--out", default=None, help="keep data and runs here (default: a temporary folder)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; loihi2, default "
          f"search settings, winners trained {args.epochs} epochs + 5 QAT", flush=True)
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(args.out or scratch)
        for dataset in args.datasets.split(","):
            extra = {}
            if dataset != "digits":
                from scale import WRITERS

                data = base / f"data-{dataset}"
                if not data.exists():
                    WRITERS[dataset](data, args.samples)
                extra = {"data_dir": str(data), "max_samples": args.max_samples}
            for strategy in args.strategies.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    config = SearchConfig(target="loihi2", dataset=dataset, strategy=strategy, seed=seed, **extra)
                    started = time.perf_counter()
                    outcome = run_search(config, base / f"{dataset}-{strategy}-{seed}-{int(time.time())}")
                    seconds = time.perf_counter() - started
                    figures = {"search_s": seconds, "evaluations": outcome.report["evaluations"],
                               **trained_figures(outcome.out_dir, args.epochs)}
                    results.setdefault((dataset, strategy), []).append(figures)
                    print(f"{dataset:8s} {strategy:9s} seed {seed}: search {seconds:5.0f} s "
                          f"({figures['evaluations']} evaluations), winner {outcome.winner.cell}: test "
                          f"{100 * figures['test_accuracy']:.2f}%, {figures['spikes']:.0f} spikes, "
                          f"{figures['energy_uj']:.2f} uJ, {figures['cores']} cores", flush=True)
    print(f"\n{'dataset':8s} {'strategy':9s} {'runs':>4s} {'search s':>9s} {'test %':>7s} {'spikes':>8s} "
          f"{'uJ':>7s}")
    for (dataset, strategy), runs in results.items():
        mean = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
        print(f"{dataset:8s} {strategy:9s} {len(runs):4d} {mean['search_s']:9.0f} {100 * mean['test_accuracy']:7.2f} "
              f"{mean['spikes']:8.0f} {mean['energy_uj']:7.2f}")


if __name__ == "__main__":
    main()
