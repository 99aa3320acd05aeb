"""The GPU path end to end, on a machine with CUDA: every stage that computes with torch runs with ``--device``,
twice where a repeat must give the same numbers, and against the CPU where speed is the question.

    python bench/device_check.py                # on a CUDA machine: --device cuda against --device cpu
    python bench/device_check.py --device cpu   # the same steps on the CPU alone (checks the script itself)
    python bench/device_check.py --quick        # search, train, export and the fixed-point checks only

Each step is one ``python -m hwnas`` command in its own process with a time limit; one line per step (seconds,
exit status, what it checked), then a summary. Figures go to stdout; a step's own output goes to ``--log``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Steps:
    """Runs hwnas commands in subprocesses, timing each and keeping their output in one log."""

    def __init__(self, log: Path, limit_s: float) -> None:
        self.log = log
        self.limit_s = limit_s
        self.failures = 0

    def run(self, label: str, *argv: str, expect: int = 0) -> tuple[float, str]:
        """Run ``python -m hwnas argv``; print and return its seconds and combined output."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        started = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-m", "hwnas", *argv], cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=self.limit_s)
            code, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            code, output = "timeout", f"{exc.stdout or ''}{exc.stderr or ''}"
        seconds = time.perf_counter() - started
        with self.log.open("a", encoding="utf-8") as handle:
            handle.write(f"\n===== {label}: hwnas {' '.join(argv)} -> {code} in {seconds:.1f} s\n{output}")
        ok = code == expect
        self.failures += not ok
        tail = output.strip().splitlines()[-1] if output.strip() else ""
        print(f"{'ok ' if ok else 'BAD'} {label:<34} {seconds:7.1f} s  exit {code}  {tail[:110]}", flush=True)
        return seconds, output


def search_rows(folder: Path) -> list[dict]:
    """search.csv of a run folder as rows without the wall-clock column (empty when missing)."""
    path = folder / "search.csv"
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return [{key: value for key, value in row.items() if key != "seconds"} for row in csv.DictReader(handle)]


def read_json(path: Path) -> dict:
    """A JSON file, or {} when missing."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def nondeterministic_ops(output: str) -> set[str]:
    """Ops torch warned have no deterministic CUDA implementation."""
    return {line.strip()[:160] for line in output.splitlines() if "does not have a deterministic" in line}


def device_agreement(run: Path, device: str, reference: str) -> str:
    """Whether the trained model of ``run`` computes the same spikes on ``device`` and ``reference`` (64 test
    samples of its dataset, rate-encoded with seed 0)."""
    import torch

    sys.path.insert(0, str(ROOT))
    from hwnas.data import load_dataset
    from hwnas.backends.compare import inputs_from
    from hwnas.sim.seeding import resolve_device
    from hwnas.training import load_model

    config = read_json(run / "report.json").get("config", {})
    rasters = []
    for name in (device, reference):
        net, arch, _ = load_model(run / "model.pt", resolve_device(name))
        splits = load_dataset(config.get("dataset", "digits"), None, arch.timesteps, int(config.get("seed", 0)))
        inputs, _ = inputs_from(splits, 64, arch.timesteps, arch.encoding, 0)
        with torch.no_grad():
            codes = net(inputs.to(resolve_device(name)), record=True).codes
        rasters.append({key: value.cpu() for key, value in codes.items()})
    differing = [key for key in rasters[0] if not torch.equal(rasters[0][key], rasters[1][key])]
    spikes = int(sum(float(value.sum()) for value in rasters[0].values()))
    return "identical" + f" ({spikes} spikes)" if not differing else f"DIFFERENT in {', '.join(differing)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="device under test (default: %(default)s)")
    parser.add_argument("--reference", default="cpu", help="device it is compared with (default: %(default)s)")
    parser.add_argument("--limit", type=float, default=240, help="seconds per step (default: %(default)s)")
    parser.add_argument("--log", default=None, help="file for every step's output (default: a temporary file)")
    parser.add_argument("--out", default=None, help="folder for the run folders (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true",
                        help="search, train, export and the fixed-point check only (no evolution, proxy-check or "
                             "scoring speed)")
    args = parser.parse_args()

    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch "
          f"{torch.__version__}, CUDA {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}",
          flush=True)
    scratch = Path(args.out or tempfile.mkdtemp(prefix="hwnas-device-"))
    scratch.mkdir(parents=True, exist_ok=True)
    steps = Steps(Path(args.log) if args.log else scratch / "steps.log", args.limit)
    dev, ref = args.device, args.reference
    search = ["search", "--quiet", *(["--refine", "2", "--candidates", "8"] if args.quick else ["--refine", "4"])]
    warned: set[str] = set()

    # a search on the device, twice: the same seed must give the same candidates, scores and winner
    t_dev, out = steps.run(f"search {dev}", *search, "--device", dev, "--out", str(scratch / "dev1"))
    warned |= nondeterministic_ops(out)
    _, out = steps.run(f"search {dev} (repeat)", *search, "--device", dev, "--out", str(scratch / "dev2"))
    warned |= nondeterministic_ops(out)
    first, second = search_rows(scratch / "dev1"), search_rows(scratch / "dev2")
    same = bool(first) and first == second
    print(f"    repeat on {dev}: search.csv {'identical' if same else 'DIFFERS'} ({len(first)} rows)")
    steps.failures += not same
    t_ref, _ = steps.run(f"search {ref}", *search, "--device", ref, "--out", str(scratch / "ref"))
    winners = [read_json(scratch / name / "report.json").get("winner", {}).get("cell") for name in ("dev1", "ref")]
    print(f"    winner on {dev}: {winners[0]}; on {ref}: {winners[1]}; search time {dev}/{ref} = "
          f"{t_dev / max(t_ref, 1e-9):.2f}")

    # training (float then 8-bit QAT) in the device the search recorded, and on the reference
    train = ["train", "--epochs", "3", "--qat-epochs", "1", "--quiet"]
    t_dev, _ = steps.run(f"train {dev}", *train[:1], str(scratch / "dev1"), *train[1:])
    t_ref, _ = steps.run(f"train {ref}", *train[:1], str(scratch / "dev2"), *train[1:], "--device", ref)
    accuracy = [read_json(scratch / name / "train.json").get("test_accuracy") for name in ("dev1", "dev2")]
    devices = [read_json(scratch / name / "train.json").get("device") for name in ("dev1", "dev2")]
    print(f"    trained on {devices[0]}: test accuracy {accuracy[0]}; on {devices[1]}: {accuracy[1]}; "
          f"train time {dev}/{ref} = {t_dev / max(t_ref, 1e-9):.2f}")

    # fine-tuned in Loihi's arithmetic on the device: the model equals the integer twin, and computes the same
    # spikes on the device as on the CPU
    steps.run("export (trained on the device)", "export", str(scratch / "dev1"))
    steps.run("validate: trained vs twin", "validate", str(scratch / "dev1"), "--samples", "20", "--skip",
              "lava_fixed,lava_float,norse")
    pair = read_json(scratch / "dev1" / "validation.json").get("pairs", {}).get("trained/hwnas_int", {})
    print(f"    trained on {devices[0]} (arithmetic {read_json(scratch / 'dev1' / 'train.json').get('arithmetic')}) "
          f"vs integer twin: {'IDENTICAL' if pair.get('identical') else 'DIFFERENT'}")
    steps.failures += not pair.get("identical")
    same_spikes = device_agreement(scratch / "dev1", dev, ref)
    print(f"    the trained model on {dev} and on {ref}: {same_spikes}")
    steps.failures += not same_spikes.startswith("identical")
    if args.quick:
        print(f"{steps.failures} step(s) failed; log: {steps.log}")
        return 1 if steps.failures else 0

    # the other stages that compute: the evolution's supernet, proxy-check's trainings
    steps.run(f"evolution {dev}", "search", "--strategy", "evolution", "--population", "6", "--generations", "1",
              "--supernet-epochs", "1", "--refine", "2", "--quiet", "--device", dev, "--out", str(scratch / "evo"))
    steps.run(f"proxy-check {dev}", "proxy-check", "--candidates", "4", "--epochs", "1", "--seeds", "1",
              "--supernet-epochs", "1", "--max-samples", "400", "--device", dev, "--out", str(scratch / "proxy"))
    steps.run("estimate", "estimate", str(scratch / "dev1"))
    steps.run("device the machine lacks", "search", "--device", "cuda:99", "--out", str(scratch / "none"), expect=2)

    # scoring speed at the seeds' CIFAR-10 configuration (synthetic 3x32x32, width 16, batch 64, T 5)
    for device in (dev, ref):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "bench/search_speed.py", "--input-shape", "3,32,32", "--width", "16",
                               "--batch", "64", "--timesteps", "5", "--candidates", "12", "--skip-prune", "--device",
                               device], cwd=ROOT, capture_output=True, text=True, timeout=args.limit)
        line = next((l for l in done.stdout.splitlines() if l.startswith("random search")), done.stderr[-300:])
        print(f"    scoring 3x32x32 on {device} ({time.perf_counter() - started:.0f} s): {line}", flush=True)
    if warned:
        print("    ops torch reports as nondeterministic on this device:")
        for line in sorted(warned):
            print(f"      {line}")
    print(f"{steps.failures} step(s) failed; log: {steps.log}")
    return 1 if steps.failures else 0


if __name__ == "__main__":
    sys.exit(main())
