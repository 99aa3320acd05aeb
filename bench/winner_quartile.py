"""Where does a search's winner land among sampled cells, trained on the same short budget?

Reads a finished `hwnas proxy-check` folder (default runs/proxy-check) for its candidates' seed-mean test
accuracies, runs `hwnas search` (prune strategy, default settings otherwise, on the check's data: dataset, data
folder, sample cap, width, timesteps) with each --refine and --screen value and each search --seeds value,
trains each winner with the proxy-check protocol (same epochs, same training seeds) and prints the winner's
seed-mean accuracy, its percentile among the candidates, whether it reaches the top quartile, and the energy
per inference the search reported next to that of the protocol-trained winner on the test split. With --full, each winner is also trained like `hwnas train` does by default (float and
quantisation-aware) and its test accuracy and the energy of the trained network on the test split are printed
next to the energy the search predicted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwnas.arch.builder import build_network  # noqa: E402
from hwnas.arch.genotype import Architecture  # noqa: E402
from hwnas.data import load_dataset  # noqa: E402
from hwnas.hw_models import load_target  # noqa: E402
from hwnas.hw_models.estimate import encode_samples, estimate_network  # noqa: E402
from hwnas.hw_models.fitness import hardware_terms  # noqa: E402
from hwnas.nas.proxy_check import REPORT_FILE, STATE_FILE  # noqa: E402
from hwnas.nas.runner import SearchConfig, run_search  # noqa: E402
from hwnas.training import TrainConfig, short_training, train_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("proxy_dir", nargs="?", default="runs/proxy-check")
    parser.add_argument("--refine", default="8", help="comma-separated --refine values to compare")
    parser.add_argument("--screen", default=str(SearchConfig().screen),
                        help="comma-separated --screen values to compare (0: preselect by fitness)")
    parser.add_argument("--threads", type=int, default=SearchConfig().threads, help="torch threads of the searches")
    parser.add_argument("--seeds", default="0", help="comma-separated search seeds")
    parser.add_argument("--full", action="store_true", help="also train each winner fully (hwnas train defaults)")
    args = parser.parse_args()
    folder = Path(args.proxy_dir)
    report = json.loads((folder / REPORT_FILE).read_text())
    state = json.loads((folder / STATE_FILE).read_text())
    config = report["config"]
    seeds = config["seeds"]
    accuracies = [float(np.mean([c["test_accuracy"][str(s)] for s in range(seeds)]))
                  for c in state["candidates"].values() if len(c["test_accuracy"]) == seeds]
    quartile = float(np.percentile(accuracies, 75))
    print(f"{len(accuracies)} proxy-check cells, {config['epochs']} epochs x {seeds} seeds: seed-mean test accuracy "
          f"median {100 * np.median(accuracies):.2f}%, top quartile from {100 * quartile:.2f}%", flush=True)
    splits = load_dataset(config["dataset"], config["data_dir"], config["timesteps"], config["seed"],
                          config.get("max_samples"))
    target = load_target(config["target"])
    summary: dict[tuple[int, int], list[tuple[float, bool]]] = {}
    variants = [(int(r), int(s)) for r in args.refine.split(",") for s in args.screen.split(",")]
    for search_seed in (int(v) for v in args.seeds.split(",")):
        for refine, screen in variants:
            with tempfile.TemporaryDirectory() as scratch:
                run_dir = Path(scratch) / "run"
                search = SearchConfig(target=config["target"], dataset=config["dataset"], data_dir=config["data_dir"],
                                      max_samples=config.get("max_samples"), timesteps=config["timesteps"],
                                      width=config["width"], seed=search_seed, refine=refine, screen=screen,
                                      threads=args.threads)
                started = time.perf_counter()
                outcome = run_search(search, run_dir, splits=splits)
                search_seconds = time.perf_counter() - started
                arch = Architecture.load(run_dir / "architecture.json")
                trained = [short_training(arch, splits, config["epochs"], 1000 * (config["seed"] + 1) + s, "test")
                           for s in range(seeds)]
                mean = float(np.mean([run.accuracy for run in trained]))
                percentile = 100.0 * float(np.mean([a <= mean for a in accuracies]))
                summary.setdefault((refine, screen), []).append((percentile, mean >= quartile))
                predicted = outcome.report.get("estimate", {}).get("totals", {}).get("energy_j")
                line = (f"seed {search_seed} --refine {refine} --screen {screen}: winner {outcome.winner.cell} in "
                        f"{search_seconds:.0f} s: seed-mean test accuracy {100 * mean:.2f}% (percentile "
                        f"{percentile:.0f}, top quartile: {'yes' if mean >= quartile else 'no'})")
                if predicted:
                    line += f"; search-predicted energy {1e6 * predicted:.2f} uJ untrained"
                refined = outcome.report.get("refined_estimate")
                if refined:
                    line += f", {1e6 * refined['energy_j']:.2f} uJ after refinement"
                if target.is_hardware:
                    net = build_network(arch)
                    energies = [hardware_terms(net, activity, target)[2].energy_j for _, activity in trained]
                    line += f"; protocol-trained winner on the test split {1e6 * float(np.mean(energies)):.2f} uJ"
                if args.full:
                    trained = train_run(run_dir, TrainConfig())
                    inputs = encode_samples(splits, "test", 10_000, arch.timesteps, arch.encoding, search_seed)
                    estimate, _ = estimate_network(trained.network.cpu(), target, inputs)
                    line += (f"; fully trained: test {100 * trained.report['test_accuracy']:.2f}%, "
                             f"{1e6 * estimate.energy_j:.2f} uJ on the test split")
                print(line, flush=True)
    for (refine, screen), rows in summary.items():
        print(f"--refine {refine} --screen {screen}: mean percentile {np.mean([p for p, _ in rows]):.0f}, top quartile in "
              f"{sum(hit for _, hit in rows)} of {len(rows)} seeds")


if __name__ == "__main__":
    main()
