"""Search speed, single process: seconds per score evaluation, candidates per second, and the wall time of a
random search and of a prune search.

Default: digits (1x8x8) at the default width, batch 64, T = 8, 2 repeats, loihi2 (pipelined timing).
The seeds' CIFAR-10 configuration, on synthetic 3x32x32 inputs of the same shape:
    python bench/search_speed.py --input-shape 3,32,32 --batch 64 --timesteps 5 --repeats 2 --width 16
Targets (issue 2, digits at the default widths): prune search under 60 s, random search >= 5 candidates/s.
With --conv-bound: one evaluation of the heaviest cell (a convolution on every pair) against the same network's
convolutions alone, replayed with the recorded shapes in the standard layout and in channels_last (the lower
bound of an evaluation; target ratio at most 1.5x).
Serial against a local Ray cluster (the default search, refinement included; same winner checked):
    python bench/search_speed.py --workers 2 --skip-random --skip-prune
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
from hwnas.nas.runner import SearchConfig, run_search  # noqa: E402
from hwnas.sim.seeding import resolve_device  # noqa: E402


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
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None,
                        help="also run the default search (refinement included) serially and on a local Ray cluster "
                             "of this many workers, and print the ratio")
    parser.add_argument("--conv-bound", action="store_true",
                        help="time one evaluation against its convolutions alone (standard and channels_last)")
    parser.add_argument("--skip-prune", action="store_true")
    parser.add_argument("--skip-random", action="store_true")
    args = parser.parse_args()

    if args.input_shape:
        shape = tuple(int(v) for v in args.input_shape.split(","))
        splits = synthetic_splits(shape, 10, max(4 * args.batch, 256), 0)
    else:
        splits = load_dataset("digits")
    common = dict(target=args.target, timesteps=args.timesteps, width=args.width, batch_size=args.batch,
                  repeats=args.repeats, refine=0, device=args.device)  # the scoring alone is timed
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, device {resolve_device(args.device)}")
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
        if args.conv_bound:
            conv_bound(args, splits)
        if args.workers:
            compare_workers(args, splits, Path(scratch))


def _median_seconds(run, repeats: int = 5) -> float:
    """Median wall time of ``run()`` after one warm-up call (CUDA synchronised)."""
    run()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def conv_bound(args, splits: DatasetSplits) -> None:
    """One SAHD evaluation of the heaviest cell against its convolutions alone, in both memory layouts."""
    from hwnas.arch.builder import build_network
    from hwnas.hw_models import load_target
    from hwnas.hw_models.fitness import hardware_terms
    from hwnas.nas.evaluate import Evaluator, ScoreConfig
    from hwnas.nas.preflight import HEAVIEST_CELL
    from hwnas.nas.runner import scoring_batches, template_architecture
    from hwnas.sim.seeding import build_seeded

    device = resolve_device(args.device)
    config = SearchConfig(target=args.target, timesteps=args.timesteps, width=args.width, batch_size=args.batch,
                          repeats=args.repeats, device=args.device)
    arch = template_architecture(config, splits, load_target(args.target).timing).with_cell(HEAVIEST_CELL)
    net = build_seeded(lambda: build_network(arch), 0, arch.key).to(device)
    evaluator = Evaluator(scoring_batches(config, splits), ScoreConfig(batch_size=args.batch, repeats=args.repeats),
                          device)
    calls = []
    hooks = [module.register_forward_hook(lambda m, inputs, _: calls.append((m, tuple(inputs[0].shape))))
             for module in net.modules() if isinstance(module, torch.nn.Conv2d)]
    evaluator.evaluate(net)
    for hook in hooks:
        hook.remove()
    evaluation = _median_seconds(lambda: evaluator.evaluate(net))
    activity = evaluator.evaluate(net)["activity"]
    target = load_target(args.target)
    mapping = _median_seconds(lambda: hardware_terms(net, activity, target), repeats=3) if target.is_hardware else 0.0
    generator = torch.Generator().manual_seed(0)
    inputs = [(module, (torch.rand(shape, generator=generator) < 0.2).float().to(device)) for module, shape in calls]

    prepared = {layout: [(x.contiguous(memory_format=layout), m.weight.detach().contiguous(memory_format=layout),
                          m.bias, m.stride, m.padding) for m, x in inputs]
                for layout in (torch.contiguous_format, torch.channels_last)}

    def replay(layout) -> None:
        with torch.no_grad():
            for x, weight, bias, stride, padding in prepared[layout]:
                torch.nn.functional.conv2d(x, weight, bias, stride, padding)

    standard = _median_seconds(lambda: replay(torch.contiguous_format))
    channels_last = _median_seconds(lambda: replay(torch.channels_last))
    print(f"heaviest cell {arch.key} at width {arch.width}, {len(calls)} convolution calls per evaluation: "
          f"evaluation {evaluation * 1000:.1f} ms; its convolutions alone {standard * 1000:.1f} ms (standard "
          f"layout), {channels_last * 1000:.1f} ms (channels_last); evaluation / channels_last convolutions = "
          f"{evaluation / channels_last:.2f} (target <= 1.5), / standard = {evaluation / standard:.2f}")
    print(f"its hardware mapping and energy on {args.target} (on the CPU, every candidate): {mapping * 1000:.1f} ms "
          f"= {mapping / evaluation:.2f}x the evaluation, {100 * mapping / (evaluation + mapping):.1f}% of a candidate's "
          f"time (target <= 10%)")


def compare_workers(args, splits: DatasetSplits, scratch: Path) -> None:
    """The default search (prune, then refinement) in one process and on ``args.workers`` Ray workers."""
    config = SearchConfig(target=args.target, timesteps=args.timesteps, width=args.width, batch_size=args.batch,
                          repeats=args.repeats, device=args.device)
    walls, winners = [], []
    for workers in (None, args.workers):
        start = time.perf_counter()
        outcome = run_search(config, scratch / f"workers{workers}", splits=splits, workers=workers)
        walls.append(time.perf_counter() - start)
        winners.append(outcome.architecture.key)
        print(f"default search, {'one process' if workers is None else f'{workers} Ray workers'}: "
              f"{walls[-1]:.1f} s, winner {winners[-1]}")
    print(f"workers/serial time ratio {walls[1] / walls[0]:.2f} (Ray's start included); "
          f"same winner: {winners[0] == winners[1]}")


if __name__ == "__main__":
    main()
