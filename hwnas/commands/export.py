"""``hwnas export``: write a trained network as NIR (``model.nir``) or ONNX (``model.onnx``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import positive_float


def add_parser(commands) -> None:
    """Declare ``hwnas export DIR --format nir``."""
    export = commands.add_parser(
        "export", help="write the trained network of a run folder as NIR (model.nir), ONNX (model.onnx) or netx (model.h5)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Export DIR/model.pt (written by hwnas train) as a NIR graph, DIR/model.nir, readable by nir.read and\n"
            "by other NIR tools. Neurons become CubaLIF (LIF when du = 1), max-pool neurons SumPool2d + Threshold,\n"
            "convolutions Conv2d (batch-norm folded, quantised weights as trained), the classifier Flatten +\n"
            "Linear; skip edges are plain edges and feedback edges close cycles. NIR has no time step: the one\n"
            "used for the time constants (--dt) is recorded in the graph's metadata (hwnas.dt_s).\n"
            "--profile portable writes what other tools read (snnTorch 1.0 among them): memoryless LIF for the\n"
            "max-pool neurons, pooling as strided Conv2d (channel to itself), time constants for dt = 1e-4 s (snnTorch's),\n"
            "plain node names; hwnas reads it back to the same spikes.\n"
            "--format onnx writes the network unrolled over its timesteps (plus the pipeline latency), neuron state\n"
            "as explicit tensors: input (T, batch, C, H, W), outputs spike_counts and logits; checked with\n"
            "onnx.checker and against hwnas' simulator with onnx's reference evaluator.\n"
            "--format netx writes lava-dl's netx HDF5 (DIR/model.h5), what Loihi 2 hardware deploys from. netx holds\n"
            "a chain of conv/dense layers: no pooling layer, no skip fan-in, no feedback (hwnas search --deployable\n"
            "netx searches only such networks); anything else is refused naming the layer. The file is loaded with\n"
            "netx and run in Lava."),
        epilog="examples:\n  hwnas export runs/demo --format nir\n"
               "  hwnas export runs/demo --profile portable --out runs/demo/portable.nir\n"
               "  hwnas export runs/demo --format onnx\n"
               "  hwnas export runs/chain --format netx")
    export.add_argument("run_dir", metavar="DIR", help="run folder with model.pt")
    export.add_argument("--format", choices=("nir", "onnx", "netx"), default="nir",
                        help="nir (any NIR tool, hwnas deploy/validate), onnx (unrolled in time), netx (lava-dl's HDF5 "
                             "for Loihi 2 hardware; sequential networks only) (default: %(default)s)")
    export.add_argument("--profile", choices=("hwnas", "portable"), default="hwnas",
                        help="NIR only: hwnas (exact round trip through hwnas, Lava, Norse) or portable (for snnTorch "
                             "and other readers) (default: %(default)s)")
    export.add_argument("--dt", type=positive_float, default=None,
                        help="seconds per step for the NIR time constants (default: 1e-3; the portable profile "
                             "always writes 1e-4)")
    export.add_argument("--out", default=None, help="output file (default: DIR/model.nir or DIR/model.onnx)")
    export.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Export and check by reading the file back."""
    from ..formats.nir import DEFAULT_DT_S, export, load, write
    from ..formats.portable import PORTABLE_DT_S, to_portable_nir
    from ..errors import OptionError
    from ..io_utils import check_writable
    from ..run_folder import RunFolder
    from ..training.model_file import load_model

    folder = RunFolder(args.run_dir)
    if args.format != "nir" and args.profile != "hwnas":
        raise OptionError(f"--profile applies to --format nir, not {args.format}")
    out = Path(args.out) if args.out else folder.export(args.format)
    check_writable(out, "--out")
    net, arch, _ = load_model(folder.model)
    with folder.writing("export"):
        if args.format == "netx":
            return _netx(net, arch, out)
        if args.format == "onnx":
            return _onnx(net, arch, out)
        if args.profile == "portable":
            write(out, to_portable_nir(net, arch, args.dt))
        else:
            export(net, out, arch, args.dt or DEFAULT_DT_S)
    loaded = load(out)
    dt_s = PORTABLE_DT_S if args.profile == "portable" else args.dt or DEFAULT_DT_S
    print(f"wrote {out}: {len(loaded.populations)} neuron populations, {len(loaded.connections)} connections "
          f"({args.profile} profile, dt {dt_s:g} s, {arch.timing} timing recorded in its metadata)")
    return 0


def _netx(net, arch, out: Path) -> int:
    """Write netx HDF5, load it with lava-dl's netx, run a test batch in Lava and compare with hwnas."""
    import numpy as np
    import torch

    from ..backends.lava import run_netx
    from ..formats.netx import netx_twin, write_netx
    from ..formats.nir import load, to_nir
    from ..sim.integer import simulate_fixed

    deployed = load(to_nir(net, arch))  # the weights as exported: quantised, batch-norm folded
    layers = write_netx(deployed, out)
    sample = torch.bernoulli(torch.full((arch.timesteps, 4, *arch.input_shape), 0.3),
                             generator=torch.Generator().manual_seed(0)).numpy()
    expected = simulate_fixed(netx_twin(deployed, layers), sample, timing="zero-delay")
    measured = run_netx(str(out), sample, [(layer.population, int(np.prod(layer.shape))) for layer in layers])
    agree = all(np.array_equal(expected.spikes[name], measured.spikes[name]) for name in measured.spikes)
    kinds = ", ".join(f"{layer.kind} {layer.population}" for layer in layers)
    print(f"wrote {out}: {len(layers)} layers ({kinds}); weights as even integers at scale 64")
    print(f"loaded with lava.lib.dl.netx.hdf5.Network and run in Lava fixed-point on a test batch: spikes "
          f"{'match' if agree else 'DIFFER from'} hwnas' integer simulation of the file in every layer")
    return 0 if agree else 1


def _onnx(net, arch, out: Path) -> int:
    """Export ONNX and check it against hwnas on a random spike batch."""
    from ..formats.onnx import export_onnx, matches_hwnas

    export_onnx(net, out, arch.timesteps)
    agree = matches_hwnas(out, net, arch.timesteps)
    print(f"wrote {out}: {arch.timesteps} input steps + {net.latency_steps} latency steps unrolled; onnx.checker passed; "
          f"reference evaluator {'matches' if agree else 'DIFFERS from'} hwnas' output spike counts on a test batch")
    return 0 if agree else 1
