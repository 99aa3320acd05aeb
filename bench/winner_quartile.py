"""Where does the default search's winner land among sampled cells, trained on the same short budget?

Reads a finished `hwnas proxy-check` folder (default runs/proxy-check) for its candidates' seed-mean test
accuracies, runs `hwnas search` with its default settings (and with --refine 0 for comparison) on the same data,
trains each winner with the proxy-check protocol (same epochs, same training seeds) and prints the winner's
seed-mean accuracy, its percentile among the candidates and whether it reaches the top quartile.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwnas.data import load_dataset  # noqa: E402
from hwnas.search.proxy_check import REPORT_FILE, STATE_FILE  # noqa: E402
from hwnas.train import short_training_accuracy  # noqa: E402
from hwnas.search.runner import SearchConfig, run_search  # noqa: E402
from hwnas.search.space import Architecture  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("proxy_dir", nargs="?", default="runs/proxy-check")
    parser.add_argument("--refine", default="0,8", help="comma-separated --refine values to compare")
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
          f"median {100 * np.median(accuracies):.2f}%, top quartile from {100 * quartile:.2f}%")
    splits = load_dataset(config["dataset"], config["data_dir"], config["timesteps"], config["seed"])
    for refine in (int(v) for v in args.refine.split(",")):
        with tempfile.TemporaryDirectory() as scratch:
            search = SearchConfig(target=config["target"], dataset=config["dataset"], timesteps=config["timesteps"],
                                  width=config["width"], seed=config["seed"], refine=refine)
            outcome = run_search(search, Path(scratch) / "run", splits=splits)
            arch = Architecture.load(Path(scratch) / "run" / "architecture.json")
        winner_accuracies = [short_training_accuracy(arch, splits, config["epochs"], 1000 * (config["seed"] + 1) + s,
                                                     "test") for s in range(seeds)]
        mean = float(np.mean(winner_accuracies))
        percentile = 100.0 * float(np.mean([a <= mean for a in accuracies]))
        energy = outcome.report.get("estimate", {}).get("totals", {}).get("energy_j")
        print(f"--refine {refine}: winner {outcome.winner['cell']}: seed-mean test accuracy {100 * mean:.2f}% "
              f"(percentile {percentile:.0f}, top quartile: {'yes' if mean >= quartile else 'no'}); "
              f"search-predicted energy {1e6 * energy:.2f} uJ" if energy else "")


if __name__ == "__main__":
    main()
