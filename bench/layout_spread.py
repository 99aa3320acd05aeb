"""Does the CPU's channels_last layout (issue 32, :mod:`hwnas.sim.layout`) change what training finds?

channels_last changes float rounding (oneDNN's batch-norm and convolution kernels sum in another order), so a float
training in it is not bit for bit the training in the standard layout. This script measures by how much, against
what the seed alone changes: the search's short training (:func:`hwnas.training.loop.short_training`) of a few
cells, with two seeds each, in both layouts, then the test accuracies side by side, the largest difference between
the layouts and the largest difference between the seeds of one cell in the standard layout.

    .venv/bin/python bench/layout_spread.py [--dataset digits] [--epochs 2] [--width 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwnas.arch.genotype import Architecture, parse_cell_key  # noqa: E402
from hwnas.data.registry import load_dataset  # noqa: E402
from hwnas.sim.layout import standard_layout  # noqa: E402
from hwnas.training.loop import short_training  # noqa: E402

CELLS = ("0-1:zero 0-2:zero 0-3:conv3x3 1-2:zero 1-3:zero 2-3:zero",
         "0-1:conv3x3 0-2:conv3x3 0-3:skip 1-2:skip 1-3:zero 2-3:conv3x3",
         "0-1:conv3x3 0-2:zero 0-3:zero 1-2:conv3x3 1-3:zero 2-3:conv3x3",
         "0-1:conv3x3 0-2:skip 0-3:zero 1-2:conv3x3 1-3:conv3x3< 2-3:conv3x3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_dataset(args.dataset, args.data_dir, args.timesteps, 0, args.max_samples)
    print(f"{args.dataset}, input {list(splits.input_shape)}, width {args.width}, T {args.timesteps}, "
          f"{args.epochs} epochs of the search's short training, {args.threads} thread(s); test accuracy (%)")
    print(f"{'cell':66s} {'seed':>4s} {'standard':>9s} {'chan_last':>9s} {'diff':>6s}")
    layout_diffs, seed_spreads = [], []
    started = time.perf_counter()
    for cell in CELLS:
        arch = Architecture(cell=parse_cell_key(cell), input_shape=splits.input_shape,
                            num_classes=splits.num_classes, width=args.width, timesteps=args.timesteps,
                            timing="pipelined")
        standard = []
        for seed in range(args.seeds):
            with standard_layout():
                before = 100 * short_training(arch, splits, args.epochs, seed, split="test").accuracy
            after = 100 * short_training(arch, splits, args.epochs, seed, split="test").accuracy
            standard.append(before)
            layout_diffs.append(abs(after - before))
            print(f"{cell:66s} {seed:4d} {before:9.2f} {after:9.2f} {after - before:+6.2f}")
        seed_spreads.append(max(standard) - min(standard))
    print(f"largest difference between the layouts: {max(layout_diffs):.2f} points (mean {sum(layout_diffs) / len(layout_diffs):.2f}); "
          f"largest difference between the seeds of one cell (standard layout): {max(seed_spreads):.2f} points; "
          f"{time.perf_counter() - started:.0f} s")
    print(f"{time.strftime('%Y-%m-%d')}, {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}")


if __name__ == "__main__":
    main()
