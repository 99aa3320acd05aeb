"""``hwnas export``: write a trained network as NIR (``model.nir``) or ONNX (``model.onnx``)."""

from __future__ import annotations

import argparse
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
    """Export through the Python API (which checks the file) and print what was written; exit 1 when the check
    disagrees."""
    from ..api import export_checked

    exported = export_checked(args.run_dir, args.out, args.format, args.dt, args.profile, lava=True)
    print(exported.description)
    return 1 if exported.agrees is False else 0
