"""How much training does the search's screening rung need to keep the best cells?

Reads a finished `hwnas proxy-check` folder (its cells, their seed-mean test accuracies and its short_train
proxy), trains every cell on each --fractions share of one epoch (the proxy check's screening seed, the check's
data) and prints, per fraction and for the check's own screen and short_train proxies: Kendall tau against the
seed-mean test accuracy with its bootstrap interval, the recall of the true top quartile among the cells the
search would keep (8 of 25) and the percentile of the cell short training then chooses, and the seconds one
screening took here.

    .venv/bin/python bench/screen_fraction.py runs/proxy-check --fractions 0.25
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwnas.arch.genotype import parse_cell_key  # noqa: E402
from hwnas.data import load_dataset  # noqa: E402
from hwnas.hw_models import load_target  # noqa: E402
from hwnas.nas.proxy_check import (REPORT_FILE, SELECTION_PROXY, STATE_FILE, pipeline_quality,  # noqa: E402
                                      rank_agreement, search_keep_share)
from hwnas.nas.runner import SearchConfig, template_architecture  # noqa: E402
from hwnas.sim.seeding import computing_threads  # noqa: E402
from hwnas.training import short_training  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("proxy_dir", nargs="?", default="runs/proxy-check")
    parser.add_argument("--fractions", default="0.25", help="comma-separated shares of an epoch to train here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    folder = Path(args.proxy_dir)
    config = json.loads((folder / REPORT_FILE).read_text())["config"]
    candidates = json.loads((folder / STATE_FILE).read_text())["candidates"]
    keys = [k for k, c in candidates.items() if len(c["test_accuracy"]) == config["seeds"]]
    accuracy = [float(np.mean(list(candidates[k]["test_accuracy"].values()))) for k in keys]
    selection = [candidates[k]["proxies"][SELECTION_PROXY] for k in keys]
    splits = load_dataset(config["dataset"], config["data_dir"], config["timesteps"], config["seed"],
                          config.get("max_samples"))
    search = SearchConfig(dataset=config["dataset"], timesteps=config["timesteps"], width=config["width"],
                          seed=config["seed"])
    template = template_architecture(search, splits, load_target(config["target"]).timing)
    keep_share = search_keep_share(search)
    seed = 1000 * (config["seed"] + 1) + 998  # the proxy check's screening seed
    print(f"{len(keys)} cells of {folder} ({config['dataset']}, {config['epochs']} epochs x {config['seeds']} seeds, "
          f"{splits.train_x.shape[0]} training samples); keep {keep_share:.2f} of them, choose by {SELECTION_PROXY}")
    print(f"{'fraction':>8s} {'tau':>6s} {'95% interval':>16s} {'recall':>7s} {'chosen pct':>10s} {'s/cell':>7s}")

    def line(label: str, screened: list[float], seconds: str) -> None:
        rank = rank_agreement(screened, accuracy, 1000, config["seed"])
        pipeline = pipeline_quality(screened, selection, accuracy, keep_share)
        print(f"{label:>8s} {rank['kendall_tau']:6.3f} [{rank['tau_ci95'][0]:6.3f}, {rank['tau_ci95'][1]:6.3f}] "
              f"{100 * pipeline['top_quartile_recall']:6.0f}% {pipeline['chosen_percentile']:10.0f} {seconds:>7s}",
              flush=True)

    # the check's own trainings: its screening proxy and its short training (the selection, another seed)
    line(f"{config['screen_fraction']:g}*", [candidates[k]["proxies"]["screen"] for k in keys], "-")
    line(f"{config['short_epochs']}*", selection, "-")
    with computing_threads(args.threads):
        for fraction in (float(v) for v in args.fractions.split(",") if v):
            started = time.perf_counter()
            screened = [short_training(template.with_cell(parse_cell_key(k)), splits, 1, seed, "val",
                                       fraction=fraction).accuracy for k in keys]
            line(f"{fraction:g}", screened, f"{(time.perf_counter() - started) / len(keys):.1f}")
    print("* from the proxy check's state (its screen and short_train proxies; no time measured here)")


if __name__ == "__main__":
    main()
