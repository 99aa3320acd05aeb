"""What the hardware terms buy and cost, on digits.

Runs the same search twice with the same seed and candidates: once with --target loihi2 (core mapping, energy
model, fitness = score - w log2(energy / 1 uJ)), once with the same pipelined timing but no hardware terms
(--target software --timing pipelined). Prints, for each strategy:
  * the two winners' energy per inference on loihi2 (both measured the same way, on validation samples) and
    their ratio (hardware-aware / plain);
  * their SAHD scores and the ratio;
  * the search times and the overhead of the hardware terms (target: under 10%).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwnas.data import load_dataset  # noqa: E402
from hwnas.hw_models import load_target  # noqa: E402
from hwnas.hw_models.estimate import estimate_architecture  # noqa: E402
from hwnas.nas.config import DEFAULT_ENERGY_WEIGHT  # noqa: E402
from hwnas.nas.runner import SearchConfig, run_search  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=200, help="random-search candidates")
    parser.add_argument("--energy-weight", type=float, default=DEFAULT_ENERGY_WEIGHT)
    parser.add_argument("--samples", type=int, default=256, help="validation samples for the winners' energy")
    parser.add_argument("--strategies", default="random,prune")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    splits = load_dataset("digits", seed=args.seed)
    loihi2 = load_target("loihi2")
    print(f"digits, loihi2, energy weight {args.energy_weight:g}, seed {args.seed}, 2-core CPU")
    with tempfile.TemporaryDirectory() as scratch:
        for strategy in args.strategies.split(","):
            common = dict(strategy=strategy, candidates=args.candidates, seed=args.seed, refine=0)
            runs = {}
            for label, config in (
                ("hardware-aware", SearchConfig(target="loihi2", energy_weight=args.energy_weight, **common)),
                ("plain", SearchConfig(target="software", timing="pipelined", **common)),
            ):
                start = time.perf_counter()
                outcome = run_search(config, Path(scratch, f"{strategy}-{label}"), splits=splits)
                seconds = time.perf_counter() - start
                estimate, _, _ = estimate_architecture(outcome.architecture, loihi2, splits, args.samples, args.seed)
                runs[label] = (outcome, seconds, estimate.energy_j)
                extra = ""
                if label == "hardware-aware":
                    extra = (f", {outcome.report['infeasible']} of {outcome.report['candidates']} candidates "
                             f"infeasible {outcome.report['broken_rules'] or ''}")
                print(f"  {strategy:6s} {label:14s} winner {outcome.architecture.key}: SAHD {outcome.winner.score:.3f}, "
                      f"{estimate.energy_j * 1e6:.2f} uJ/inference, search {seconds:.1f} s ({len(outcome.rows)} "
                      f"evaluations){extra}")
            (hw, hw_s, hw_e), (plain, plain_s, plain_e) = runs["hardware-aware"], runs["plain"]
            print(f"  {strategy:6s} energy ratio hardware-aware/plain {hw_e / plain_e:.3f}; SAHD ratio "
                  f"{hw.winner.score / plain.winner.score:.3f} (difference {hw.winner.score - plain.winner.score:+.3f}); "
                  f"hardware-term overhead on search time {100 * (hw_s / plain_s - 1):+.1f}%")


if __name__ == "__main__":
    main()
