"""``hwnas export``: write a trained network as NIR (``model.nir``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import positive_float


def add_parser(commands) -> None:
    """Declare ``hwnas export DIR --format nir``."""
    export = commands.add_parser(
        "export", help="write the trained network of a run folder as NIR (model.nir)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Export DIR/model.pt (written by hwnas train) as a NIR graph, DIR/model.nir, readable by nir.read and\n"
            "by other NIR tools. Neurons become CubaLIF (LIF when du = 1), max-pool neurons SumPool2d + Threshold,\n"
            "convolutions Conv2d (batch-norm folded, quantised weights as trained), the classifier Flatten +\n"
            "Linear; skip edges are plain edges and feedback edges close cycles. NIR has no time step: the one\n"
            "used for the time constants (--dt) is recorded in the graph's metadata (hwnas.dt_s)."),
        epilog="example:\n  hwnas export runs/demo --format nir")
    export.add_argument("run_dir", metavar="DIR", help="run folder with model.pt")
    export.add_argument("--format", choices=("nir",), default="nir", help="output format (default: %(default)s)")
    export.add_argument("--dt", type=positive_float, default=1e-3,
                        help="seconds per step for the NIR time constants (default: %(default)s)")
    export.add_argument("--out", default=None, help="output file (default: DIR/model.nir)")
    export.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Export and check by reading the file back."""
    from ..export.nir import export, load
    from ..train import MODEL_FILE, load_model

    run_dir = Path(args.run_dir)
    net, arch, _ = load_model(run_dir / MODEL_FILE)
    out = Path(args.out) if args.out else run_dir / "model.nir"
    export(net, out, arch, args.dt)
    loaded = load(out)
    print(f"wrote {out}: {len(loaded.populations)} neuron populations, {len(loaded.connections)} connections "
          f"(dt {args.dt:g} s, {arch.timing} timing recorded in its metadata)")
    return 0
