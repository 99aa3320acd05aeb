"""Real benchmark scale: the default search for Loihi 2 at N-MNIST, DVS Gesture and CIFAR-10 shapes.

Writes data in each dataset's own on-disk format (N-MNIST 40-bit ``.bin`` files in tonic's layout, DVS Gesture
``.npy`` event files at the 128x128 sensor, which the loader downsamples to 32x32, CIFAR-10 python pickles),
made from scikit-learn's digits so that the classes are learnable: N-MNIST-like events come from an emulated
event camera making three saccades over the digit (ON where brightness rises, OFF where it falls), DVS-like
events from the digit drifting across the sensor, CIFAR-like images are the digit upscaled in colour. Then runs
``hwnas search --target loihi2`` with default settings (only --max-samples bounds the data read) and prints,
per shape: evaluations, seconds, feasible share, the winner's skeleton, cores, neurons and energy; then trains
the winner briefly, exports it to NIR and runs a few test samples in Lava fixed-point next to the integer twin.

    .venv/bin/python bench/scale.py [--shapes nmnist,dvsgesture,cifar10] [--max-samples 600] [--out DIR]
                                    [--deployable netx]
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwnas.nas.runner import SearchConfig, run_search  # noqa: E402


def _digits(count: int, seed: int):
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(seed).permutation(len(data.target))[:count]
    return data.images[order] / 16.0, data.target[order]


def _upscale(image: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour upscaling of an 8x8 image to size x size."""
    index = (np.arange(size) * 8 // size).clip(0, 7)
    return image[np.ix_(index, index)]


def nmnist_file(frame: np.ndarray, rng: np.random.Generator) -> bytes:
    """One N-MNIST recording (40-bit events: x, y, polarity, 23-bit time in us) of ``frame`` (34x34 intensities in
    [0, 1]) seen by an emulated event camera making three saccades (ON events where brightness rises, OFF where
    it falls, each kept with probability 0.7)."""
    events, previous = [], frame
    for step, (dx, dy) in enumerate([(1, 1), (-2, 0), (1, -1)] * 4):
        current = np.roll(np.roll(previous, dy, axis=0), dx, axis=1)
        change = current - previous
        for polarity, where in ((1, change > 0.25), (0, change < -0.25)):
            ys, xs = np.nonzero(where & (rng.random(where.shape) < 0.7))
            stamp = step * 25_000
            events += [(int(x), int(y), polarity, stamp + int(rng.integers(0, 25_000))) for x, y in zip(xs, ys)]
        previous = current
    events.sort(key=lambda e: e[3])
    raw = bytearray()
    for x, y, p, ts in events:
        raw += bytes([x, y, (p << 7) | ((ts >> 16) & 0x7F), (ts >> 8) & 0xFF, ts & 0xFF])
    return bytes(raw)


def write_nmnist(root: Path, count: int, seed: int = 0) -> None:
    """N-MNIST files: each digit at 28x28 inside the 34x34 sensor, seen in three saccades (ON/OFF events)."""
    images, labels = _digits(count, seed)
    rng = np.random.default_rng(seed)
    for index, (image, label) in enumerate(zip(images, labels)):
        split = "Test" if index % 5 == 0 else "Train"
        folder = root / "NMNIST" / split / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        frame = np.zeros((34, 34))
        frame[3:31, 3:31] = _upscale(image, 28)
        (folder / f"{index:05d}.bin").write_bytes(nmnist_file(frame, rng))


def write_dvsgesture(root: Path, count: int, seed: int = 0) -> None:
    """DVS Gesture ``.npy`` files (x, y, polarity, time in ms) on the 128x128 sensor: the digit drifting."""
    images, labels = _digits(count, seed)
    rng = np.random.default_rng(seed)
    for index, (image, label) in enumerate(zip(images, labels)):
        split = "ibmGestureTest" if index % 5 == 0 else "ibmGestureTrain"
        folder = root / "DVSGesture" / split / f"user{index // 11:02d}_fluorescent"
        folder.mkdir(parents=True, exist_ok=True)
        big = _upscale(image, 96)
        rows = []
        for step in range(8):
            ys, xs = np.nonzero(big > 0.4)
            keep = rng.random(ys.size) < 0.1
            xs, ys = xs[keep] + 16 + 2 * step, ys[keep] + 16
            rows.append(np.stack([xs, ys, rng.integers(0, 2, xs.size), np.full(xs.size, step * 100)], axis=1))
        np.save(folder / f"{int(label) % 11}.npy", np.concatenate(rows).astype(np.int64))


def write_cifar10(root: Path, count: int, seed: int = 0) -> None:
    """CIFAR-10 python pickles (five training batches and a test batch): the digit upscaled, in colour."""
    images, labels = _digits(count, seed)
    pixels = np.stack([np.stack([_upscale(im, 32) * c for c in (0.9, 0.6, 0.3)]) for im in images])
    data = (pixels * 255).astype(np.uint8).reshape(len(images), -1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    test = np.arange(len(images)) % 5 == 0
    train_index = np.array_split(np.nonzero(~test)[0], 5)
    for number, index in enumerate(train_index, start=1):
        with open(folder / f"data_batch_{number}", "wb") as handle:
            pickle.dump({"data": data[index], "labels": [int(v) for v in labels[index]]}, handle)
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump({"data": data[test], "labels": [int(v) for v in labels[test]]}, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, handle)


WRITERS = {"nmnist": write_nmnist, "dvsgesture": write_dvsgesture, "cifar10": write_cifar10}


def deploy_check(run_dir: Path, samples: int, netx: bool = False) -> str:
    """Train the winner briefly (1 epoch + 1 epoch 8-bit QAT), export it to NIR and run ``samples`` test samples
    in Lava fixed-point next to hwnas' integer twin; with ``netx`` also ``hwnas export --format netx`` (which
    loads the file with netx and runs it in Lava); one line with what happened."""
    import torch

    from hwnas.data import load_dataset
    from hwnas.backends.compare import compare, inputs_from
    from hwnas.formats.nir import export, read_graph
    from hwnas.run_folder import RunFolder
    from hwnas.training import TrainConfig, train_run

    started = time.perf_counter()
    outcome = train_run(run_dir, TrainConfig(epochs=1, qat_epochs=1))
    folder = RunFolder(run_dir)
    export(outcome.network.cpu(), folder.export("nir"), outcome.architecture)
    config = folder.search_config()
    arch = outcome.architecture
    splits = load_dataset(config["dataset"], config["data_dir"], arch.timesteps, 0, config.get("max_samples"))
    inputs, labels = inputs_from(splits, samples, arch.timesteps, arch.encoding, 0)
    with torch.no_grad():
        result = compare(read_graph(folder.export("nir")), inputs, labels, 1e-3, "lava_fixed")
    identical = all(row["identical"] for row in result.layers.values())
    netx_note = ""
    if netx:
        from hwnas.cli import main as hwnas_main

        status = hwnas_main(["export", str(run_dir), "--format", "netx"])
        netx_note = f"; hwnas export --format netx exited {status}"
    return (f"trained 1+1 epochs: test accuracy {100 * outcome.report['test_accuracy']:.1f}%; NIR exported; "
            f"Lava fixed-point on {samples} samples: {'IDENTICAL to' if identical else 'DIFFERENT from'} hwnas' "
            f"integer twin in every layer{netx_note} ({time.perf_counter() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="nmnist,dvsgesture,cifar10")
    parser.add_argument("--samples", type=int, default=1000, help="digits turned into dataset files")
    parser.add_argument("--max-samples", type=int, default=600, help="samples read per split (--max-samples)")
    parser.add_argument("--refine", type=int, default=None, help="override --refine (default: the search's)")
    parser.add_argument("--out", default=None, help="keep data and runs here (default: a temporary folder)")
    parser.add_argument("--deployable", default="any", help="--deployable of the search (netx: also export netx)")
    parser.add_argument("--deploy-samples", type=int, default=4,
                        help="train each winner briefly, export it and run this many samples in Lava (0: skip)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(args.out or scratch)
        for name in args.shapes.split(","):
            data = base / f"data-{name}"
            if not data.exists():
                WRITERS[name](data, args.samples)
            extra = {} if args.refine is None else {"refine": args.refine}
            config = SearchConfig(target="loihi2", dataset=name, data_dir=str(data), max_samples=args.max_samples,
                                  deployable=args.deployable, **extra)
            started = time.perf_counter()
            outcome = run_search(config, base / f"run-{name}-{int(time.time())}")
            seconds = time.perf_counter() - started
            report = outcome.report
            candidates = [r for r in outcome.rows if r.is_candidate]
            feasible = sum(bool(r.feasible) for r in candidates) / max(len(candidates), 1)
            totals = report["estimate"]["totals"]
            skeleton = report["skeleton"]
            print(f"{name:10s} input {report['dataset']['input_shape']}: {report['evaluations']} evaluations in "
                  f"{seconds:.0f} s (pre-flight {report['preflight']['seconds']:.1f} s), feasible share "
                  f"{100 * feasible:.0f}% of {len(candidates)} candidates; winner {outcome.winner.cell}")
            print(f"{'':10s} skeleton widths {skeleton['widths']}, {skeleton['downsample']} downsampling, head "
                  f"pooling {skeleton['head_pool']}; {totals['cores']} cores, {outcome.winner.neurons} neurons, "
                  f"{1e6 * totals['energy_j']:.1f} uJ per inference (untrained)"
                  + (f", {1e6 * report['refined_estimate']['energy_j']:.1f} uJ after refinement"
                     if "refined_estimate" in report else ""), flush=True)
            if args.deploy_samples:
                print(f"{'':10s} {deploy_check(outcome.out_dir, args.deploy_samples, args.deployable == 'netx')}",
                      flush=True)


if __name__ == "__main__":
    main()
