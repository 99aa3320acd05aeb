"""Does firing-rate-aware initialisation make SAHD rank cells better?

Reads a finished `hwnas proxy-check` folder (default runs/proxy-check), rescores its candidates with SAHD after
calibrating every population to a target firing rate on the scoring batch (hwnas.nas.rate_init), for each
batch-norm mode and target rate asked, and prints Kendall tau (with its bootstrap 95% interval) against the
candidates' seed-mean test accuracy, next to plain SAHD's. No training: the accuracies come from the folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwnas.arch.builder import build_network  # noqa: E402
from hwnas.arch.genotype import parse_cell_key  # noqa: E402
from hwnas.data import load_dataset  # noqa: E402
from hwnas.hw_models import load_target  # noqa: E402
from hwnas.nas.evaluate import Evaluator, ScoreConfig  # noqa: E402
from hwnas.nas.proxy_check import STATE_FILE, rank_agreement  # noqa: E402
from hwnas.nas.runner import SearchConfig, scoring_batches, template_architecture  # noqa: E402
from hwnas.sim.seeding import build_seeded  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("proxy_dir", nargs="?", default="runs/proxy-check")
    parser.add_argument("--rates", default="0.1,0.25", help="comma-separated target firing rates")
    parser.add_argument("--bn-modes", default="identity,batch")
    args = parser.parse_args()
    state = json.loads((Path(args.proxy_dir) / STATE_FILE).read_text())
    config = state["config"]
    candidates = {k: c for k, c in state["candidates"].items() if len(c["test_accuracy"]) == config["seeds"]}
    keys = list(candidates)
    accuracy = [float(np.mean(list(candidates[k]["test_accuracy"].values()))) for k in keys]
    search = SearchConfig(dataset=config["dataset"], timesteps=config["timesteps"], width=config["width"],
                          seed=config["seed"])
    splits = load_dataset(config["dataset"], config["data_dir"], config["timesteps"], config["seed"])
    template = template_architecture(search, splits, load_target(config["target"]).timing)
    batches = scoring_batches(search, splits)

    def show(label: str, scores: list[float], seconds: float) -> None:
        row = rank_agreement(scores, accuracy, 1000, config["seed"])
        print(f"{label:<32} tau {row['kendall_tau']:+.3f} [{row['tau_ci95'][0]:+.3f}, {row['tau_ci95'][1]:+.3f}]"
              f"  degenerate {sum(not np.isfinite(s) for s in scores)}  {seconds:.0f} s", flush=True)

    show("sahd, batch-norm batch (search)", [candidates[k]["proxies"]["sahd_batch"] for k in keys], 0.0)
    for bn_mode in args.bn_modes.split(","):
        for rate in (float(r) for r in args.rates.split(",")):
            evaluator = Evaluator(batches, ScoreConfig("sahd", bn_mode=bn_mode, target_rate=rate))
            started = time.perf_counter()
            scores = []
            for key in keys:
                arch = template.with_cell(parse_cell_key(key))
                net = build_seeded(lambda: build_network(arch), config["seed"], arch.key)
                scores.append(evaluator.evaluate(net)["score"])
            show(f"sahd, {bn_mode}, rate {rate:g}", scores, time.perf_counter() - started)


if __name__ == "__main__":
    main()
