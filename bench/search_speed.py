"""Search speed, single process: seconds per score evaluation, candidates per second, and the wall time of a
random search and of a prune search.

Default: digits (1x8x8) at the default width, batch 64, T = 8, 2 repeats, loihi2 (pipelined timing).
The seeds' CIFAR-10 configuration, on synthetic 3x32x32 inputs of the same shape:
    python bench/search_speed.py --input-shape 3,32,32 --batch 64 --timesteps 5 --repeats 2 --width 16
Targets (issue 2, digits at the default widths): prune search under 60 s, random search >= 5 candidates/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwnas.data import load_dataset  # noqa: E402
from hwnas.data.splits import DatasetSplits  # noqa: E402
from hwnas.search.runner import SearchConfig, run_search  # noqa: E402


def synthetic_splits(shape: tuple[int, int, int], classes: int, samples: int, seed: int) -> DatasetSplits:
    """Uniform random intensities of the given shape (speed does not depend on the pixels' meaning)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((samples, *shape), generator=g)
    y = torch.randint(0, classes, (samples,), generator=g)
    return DatasetSplits("synthetic", "static", x, y, x[:8], y[:8], x[:8], y[:8], classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-shape", default=None, help="C,H,W of synthetic inputs (default: digits data)")
    parser.add_argument("--width", type=int, default=None, help="cell channels (default: hwnas' default)")
    parser.add_argument("--batch", type=int, default=64, help="scoring batch size")
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=1000, help="random-search candidates")
    parser.add_argument("--target", default="loihi2")
    parser.add_argument("--skip-prune", action="store_true")
    parser.add_argument("--skip-random", action="store_true")
    args = parser.parse_args()

    if args.input_shape:
        shape = tuple(int(v) for v in args.input_shape.split(","))
        splits = synthetic_splits(shape, 10, max(4 * args.batch, 256), 0)
    else:
        splits = load_dataset("digits")
    common = dict(target=args.target, timesteps=args.timesteps, width=args.width, batch_size=args.batch,
                  repeats=args.repeats, refine=0)  # the scoring alone is timed
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, device "
          f"{'cuda' if torch.cuda.is_available() else 'cpu'}")
    print(f"config: input {splits.input_shape} ({splits.name}), width {args.width or 'default'}, batch {args.batch}, "
          f"T {args.timesteps}, repeats {args.repeats}, target {args.target}")
    with tempfile.TemporaryDirectory() as scratch:
        if not args.skip_random:
            start = time.perf_counter()
            outcome = run_search(SearchConfig(strategy="random", candidates=args.candidates, **common),
                                 Path(scratch, "random"), splits=splits)
            wall = time.perf_counter() - start
            evals = [r.seconds for r in outcome.rows]
            n = len(outcome.rows)
            print(f"random search: {n} candidates in {wall:.1f} s -> {n / wall:.2f} candidates/s "
                  f"(target >= 5 on digits); score evaluation {sum(evals) / n * 1000:.1f} ms mean "
                  f"(network simulation for all repeats + kernels), build+bookkeeping "
                  f"{(wall - sum(evals)) / n * 1000:.1f} ms per candidate; "
                  f"degenerate {100 * outcome.report['degenerate_share']:.1f}%")
        if not args.skip_prune:
            start = time.perf_counter()
            outcome = run_search(SearchConfig(strategy="prune", **common), Path(scratch, "prune"), splits=splits)
            wall = time.perf_counter() - start
            n = len(outcome.rows)
            print(f"prune search: {n} evaluations in {wall:.1f} s (target < 60 s on digits); "
                  f"{sum(r.seconds for r in outcome.rows) / n * 1000:.1f} ms per evaluation; "
                  f"winner {outcome.architecture.key}")


if __name__ == "__main__":
    main()
