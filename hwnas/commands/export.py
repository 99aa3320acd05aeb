"""``hwnas export``: write a trained network as NIR (``model.nir``) or ONNX (``model.onnx``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import positive_float


def add_parser(commands) -> None:
    """Declare ``hwnas export DIR --format nir``."""
    export = commands.add_parser(
        "export", help="write the trained network of a run folder as NIR (model.nir) or ONNX (model.onnx)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Export DIR/model.pt (written by hwnas train) as a NIR graph, DIR/model.nir, readable by nir.read and\n"
            "by other NIR tools. Neurons become CubaLIF (LIF when du = 1), max-pool neurons SumPool2d + Threshold,\n"
            "convolutions Conv2d (batch-norm folded, quantised weights as trained), the classifier Flatten +\n"
            "Linear; skip edges are plain edges and feedback edges close cycles. NIR has no time step: the one\n"
            "used for the time constants (--dt) is recorded in the graph's metadata (hwnas.dt_s).\n"
            "--format onnx writes the network unrolled over its timesteps (plus the pipeline latency), neuron state\n"
            "as explicit tensors: input (T, batch, C, H, W), outputs spike_counts and logits; checked with\n"
            "onnx.checker and against hwnas' simulator with onnx's reference evaluator."),
        epilog="examples:\n  hwnas export runs/demo --format nir\n  hwnas export runs/demo --format onnx")
    export.add_argument("run_dir", metavar="DIR", help="run folder with model.pt")
    export.add_argument("--format", choices=("nir", "onnx"), default="nir", help="output format (default: %(default)s)")
    export.add_argument("--dt", type=positive_float, default=1e-3,
                        help="seconds per step for the NIR time constants (default: %(default)s)")
    export.add_argument("--out", default=None, help="output file (default: DIR/model.nir or DIR/model.onnx)")
    export.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Export and check by reading the file back."""
    from ..export.nir import export, load
    from ..train import MODEL_FILE, load_model

    run_dir = Path(args.run_dir)
    net, arch, _ = load_model(run_dir / MODEL_FILE)
    out = Path(args.out) if args.out else run_dir / f"model.{args.format}"
    if args.format == "onnx":
        return _onnx(net, arch, out)
    export(net, out, arch, args.dt)
    loaded = load(out)
    print(f"wrote {out}: {len(loaded.populations)} neuron populations, {len(loaded.connections)} connections "
          f"(dt {args.dt:g} s, {arch.timing} timing recorded in its metadata)")
    return 0


def _onnx(net, arch, out: Path) -> int:
    """Export ONNX and check it against hwnas on a random spike batch."""
    import torch

    from ..export.onnx import export_onnx, run_onnx

    export_onnx(net, out, arch.timesteps)
    sample = torch.bernoulli(torch.full((arch.timesteps, 4, *arch.input_shape), 0.3),
                             generator=torch.Generator().manual_seed(0))
    counts, _ = run_onnx(out, sample)
    with torch.no_grad():
        expected = net(sample).output_spikes
    agree = bool(torch.equal(counts, expected))
    print(f"wrote {out}: {arch.timesteps} input steps + {net.latency_steps} latency steps unrolled; onnx.checker passed; "
          f"reference evaluator {'matches' if agree else 'DIFFERS from'} hwnas' output spike counts on a test batch")
    return 0 if agree else 1
