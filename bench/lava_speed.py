"""Lava's simulation speed on a trained network, against hwnas' own simulators on the same samples.

Needs a trained, exported run folder (default runs/demo, as `make demo` leaves it). Runs N test samples of
digits through: hwnas' simulator (pipelined, float64, one batch), hwnas' integer twin (one batch), Lava
fixed-point and Lava float (sample after sample, as on the chip). Prints simulated steps per second for each and
the ratio of hwnas to each Lava mode. Lava's figure includes building the process graph and starting its
runtime (one OS process per Lava process), which a user pays on every run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwnas.data import load_dataset  # noqa: E402
from hwnas.backends.registry import hwnas_rasters  # noqa: E402
from hwnas.backends.compare import inputs_from  # noqa: E402
from hwnas.backends.lava import run_lava  # noqa: E402
from hwnas.formats.nir import load, read_graph, recorded_architecture  # noqa: E402
from hwnas.sim.integer import simulate_fixed  # noqa: E402
from hwnas.sim.lowering import lower  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", default="runs/demo", help="trained run folder with model.nir")
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    model = Path(args.run_dir) / "model.nir"
    if not model.is_file():
        sys.exit(f"no {model}: run `make demo` (or hwnas run --out {args.run_dir}) first")
    graph = read_graph(model)
    arch = recorded_architecture(graph)
    net = load(graph, timing="pipelined")
    lowered = lower(net)
    splits = load_dataset("digits", None, arch.timesteps, 0)
    inputs, _ = inputs_from(splits, args.samples, arch.timesteps, arch.encoding, 0)
    samples = inputs.shape[1]
    window = arch.timesteps + lowered.latency_steps
    steps = samples * window
    print(f"{model}: {len(lowered.populations)} populations, {len(lowered.connections)} connections, "
          f"{samples} samples x {window} steps = {steps} steps")
    rates = {}
    for name, run in (("hwnas (float64, batched)", lambda: hwnas_rasters(net, inputs)),
                      ("hwnas integer twin (batched)", lambda: simulate_fixed(lowered, inputs.numpy())),
                      ("lava fixed_pt", lambda: run_lava(lowered, inputs.numpy(), "fixed")),
                      ("lava floating_pt", lambda: run_lava(lowered, inputs.numpy(), "float"))):
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
        rates[name] = steps / seconds
        print(f"  {name:30s} {seconds:8.2f} s  {rates[name]:10.1f} steps/s")
    hwnas = rates["hwnas (float64, batched)"]
    for mode in ("lava fixed_pt", "lava floating_pt"):
        print(f"hwnas / {mode}: {hwnas / rates[mode]:.1f}x")


if __name__ == "__main__":
    main()
