"""Compression before and after (``hwnas compress``, LitE-SNN's pruning, mixed precision and timestep search) on
the embedded digits and at N-MNIST's real shape (34x34x2 events), for Loihi 2.

For each dataset a trained run folder, given (``--digits-run``, ``--events-run``) or made here (a small search:
random strategy, ``--candidates`` cells scored without training, then ``hwnas train``); N-MNIST-format files come
from bench/scale.py's emulated event camera. Each run is compressed with ``hwnas compress``'s defaults (or the
options given), exported to NIR and validated in Lava's fixed point against hwnas' integer twin and the trained
network (``--lava-samples`` test samples). Prints one table: test accuracy, model size in bits, bit-weighted
synaptic operations per sample, timesteps, energy per inference and cores on loihi2, before and after.

    .venv/bin/python bench/compress.py [--digits-run RUN] [--events-run RUN] [--work DIR]
                                       [--threads 2] [-- hwnas compress options]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwnas.cli import main as hwnas  # noqa: E402


def make_run(folder: Path, dataset_options: list[str], candidates: int, width: int, epochs: int,
             threads: int) -> Path:
    """A trained run folder: a small random search (no trainings) and ``hwnas train``."""
    run = folder / "run"
    if not (run / "model.pt").is_file():
        assert hwnas(["search", *dataset_options, "--strategy", "random", "--candidates", str(candidates),
                      "--width", str(width), "--refine", "0", "--screen", "0", "--threads", str(threads),
                      "--quiet", "--out", str(run)]) == 0
        assert hwnas(["train", str(run), "--epochs", str(epochs), "--quiet"]) == 0
    return run


def compress_and_validate(run: Path, options: list[str], samples: int, name: str) -> tuple[dict, str]:
    """Compress ``run`` into ``run/<name>``, export it and validate it in Lava fixed point; the compression report
    and one line on the validation."""
    out = run / name
    started = time.perf_counter()
    assert hwnas(["compress", str(run), *options, "--out", str(out)]) == 0
    seconds = time.perf_counter() - started
    report = json.loads((out / "compress.json").read_text())
    assert hwnas(["export", str(out), "--format", "nir"]) == 0
    assert hwnas(["validate", str(out), "--samples", str(samples), "--skip", "lava_float,norse"]) == 0
    pairs = json.loads((out / "validation.json").read_text())["pairs"]
    verdict = ", ".join(f"{pair} {'identical' if pairs[pair]['identical'] else 'DIFFERENT'}"
                        for pair in ("hwnas_int/lava_fixed", "trained/lava_fixed") if pair in pairs)
    return report, f"compressed in {seconds:.0f} s; Lava fixed point on {samples} test samples: {verdict}"


def table(results: dict[str, dict]) -> str:
    """One row per figure, before and after for each dataset."""
    names = list(results)
    header = f"{'':30s}" + "".join(f"{name + ' before':>22s}{name + ' after':>22s}" for name in names)
    rows = [("test accuracy (%)", lambda f: f"{100 * f['accuracy']:.2f}"),
            ("model size (bits)", lambda f: f"{f['model_bits']}"),
            ("weights stored", lambda f: f"{f['weights']}"),
            ("bit-weighted synops/sample", lambda f: f"{f['bit_synops_per_sample']:.0f}"),
            ("synops/sample", lambda f: f"{f['synops_per_sample']:.0f}"),
            ("timesteps", lambda f: f"{f['timesteps']}"),
            ("energy on loihi2 (uJ)", lambda f: f"{1e6 * f['energy_j']:.3f}"),
            ("cores on loihi2", lambda f: f"{f['cores']}")]
    lines = [header]
    for label, show in rows:
        lines.append(f"{label:30s}" + "".join(f"{show(results[n]['before']):>22s}{show(results[n]['after']):>22s}"
                                             for n in names))
    for name in names:
        bits = [layer["bits"] for layer in results[name]["layers"].values()]
        kept = sum(layer["kept"] for layer in results[name]["layers"].values())
        total = sum(layer["weights"] for layer in results[name]["layers"].values())
        lines.append(f"{name}: bits per connection {bits}; weights kept by the masks {kept} of {total}; "
                     f"T {results[name]['before']['timesteps']} -> {results[name]['timesteps']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits-run", default=None, help="a trained digits run (default: made here)")
    parser.add_argument("--events-run", default=None, help="a trained N-MNIST-format run (default: made here)")
    parser.add_argument("--work", default=None, help="keep data and runs here (default: a temporary folder)")
    parser.add_argument("--recordings", type=int, default=1000, help="N-MNIST-format recordings written")
    parser.add_argument("--max-samples", type=int, default=600, help="event samples read per split")
    parser.add_argument("--candidates", type=int, default=8, help="cells the small searches score")
    parser.add_argument("--train-epochs", type=int, default=10, help="float epochs of the runs made here")
    parser.add_argument("--lava-samples", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-name", default="compressed", help="folder in each run the compression writes")
    parser.add_argument("--skip", default="", help="comma-separated datasets to leave out (digits, nmnist)")
    parser.add_argument("compress_options", nargs=argparse.REMAINDER,
                        help="after --: options for hwnas compress (e.g. -- --size-weight 1 --bits 2,4,8)")
    args = parser.parse_args()
    options = [o for o in args.compress_options if o != "--"] + ["--quiet"]
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}; "
          f"hwnas compress {' '.join(options)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="hwnas-compress-") as scratch:
        work = Path(args.work or scratch)
        results, notes = {}, []
        if "digits" not in args.skip:
            run = Path(args.digits_run) if args.digits_run else make_run(
                work / "digits", ["--dataset", "digits"], args.candidates, 16, args.train_epochs, args.threads)
            results["digits"], note = compress_and_validate(run, options, args.lava_samples, args.out_name)
            notes.append(f"digits ({run}): {note}")
            print(notes[-1], flush=True)
        if "nmnist" not in args.skip:
            run = Path(args.events_run) if args.events_run else None
            if run is None:
                from scale import write_nmnist

                data = work / "nmnist-data"
                if not (data / "NMNIST").is_dir():
                    write_nmnist(data, args.recordings)
                run = make_run(work / "nmnist", ["--dataset", "nmnist", "--data-dir", str(data), "--max-samples",
                                                 str(args.max_samples)], args.candidates, 8, args.train_epochs,
                               args.threads)
            results["nmnist"], note = compress_and_validate(run, options, args.lava_samples, args.out_name)
            notes.append(f"nmnist 34x34x2 ({run}): {note}")
            print(notes[-1], flush=True)
        print(table(results))


if __name__ == "__main__":
    main()
