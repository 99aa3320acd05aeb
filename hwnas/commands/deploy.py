"""``hwnas deploy``: run a NIR graph on another simulator and compare it with hwnas' own, layer by layer."""

from __future__ import annotations

import argparse

import numpy as np

from .common import positive_float, positive_int, seed_int


def add_parser(commands) -> None:
    """Declare ``hwnas deploy MODEL.nir --backend norse``."""
    deploy = commands.add_parser(
        "deploy", help="run a .nir in Lava (Loihi 2 model) or Norse and compare spikes per layer with hwnas",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run a NIR graph (hwnas' or another tool's, within the supported nodes) on the test split of a dataset,\n"
            "or on your own input array, in Lava or Norse and in hwnas' simulator, and print per layer the spikes\n"
            "per sample in both, their relative difference, the share of identical spike values, and accuracies.\n"
            "Lava runs the chip's pipelined timing (one step per connection): in fixed-point mode (default, Loihi's\n"
            "bit-accurate models) it is compared with hwnas' bit-exact integer twin, in float mode with hwnas'\n"
            "float simulator; both should match exactly. Norse runs its executor's step order, and so does hwnas then."),
        epilog="examples:\n  hwnas deploy runs/demo/model.nir --backend lava --samples 50\n"
               "  hwnas deploy runs/demo/model.nir --backend lava --float --save out.npz\n"
               "  hwnas deploy runs/demo/model.nir --backend norse --samples 100")
    deploy.add_argument("model", metavar="MODEL.nir", help="NIR graph")
    deploy.add_argument("--backend", choices=("lava", "norse"), default="lava", help="simulator (default: %(default)s)")
    mode = deploy.add_mutually_exclusive_group()
    mode.add_argument("--fixed-point", dest="mode", action="store_const", const="fixed",
                      help="Lava: Loihi's bit-accurate fixed-point models (the default)")
    mode.add_argument("--float", dest="mode", action="store_const", const="float", help="Lava: floating-point models")
    deploy.add_argument("--dataset", default="digits", help="dataset whose test split is run (default: %(default)s)")
    deploy.add_argument("--data-dir", default=None, help="folder that holds the dataset's files")
    deploy.add_argument("--samples", type=positive_int, default=100, help="test samples (default: %(default)s)")
    deploy.add_argument("--steps", type=positive_int, default=None,
                        help="steps per sample (default: the graph's recorded timesteps)")
    deploy.add_argument("--input", default=None, metavar="FILE.npy",
                        help="run this array (time, batch, ...) instead of a dataset split")
    deploy.add_argument("--dt", type=positive_float, default=None,
                        help="seconds per step (default: the graph's hwnas.dt_s metadata)")
    deploy.add_argument("--seed", type=seed_int, default=0, help="seed of the input encoding (default: %(default)s)")
    deploy.add_argument("--save", default=None, metavar="OUT.npz|OUT.json",
                        help="write output spikes (samples, steps, classes) and spikes per layer (.npz), or the "
                             "comparison (.json)")
    deploy.set_defaults(handler=run, mode="fixed")


def run(args: argparse.Namespace) -> int:
    """Run the graph through the Python API and print the per-layer table."""
    from ..api import deploy
    from ..backends.compare import read_input_array, silence_notes
    from ..io_utils import check_writable, write_json_atomic

    if args.save:  # before the run, so that its result is not lost
        check_writable(args.save, "--save", suffixes=(".npz", ".json"))
    data = read_input_array(args.input) if args.input else args.dataset
    result = deploy(args.model, data, backend=args.backend, mode=args.mode, samples=args.samples, seed=args.seed,
                    steps=args.steps, dt=args.dt, data_dir=args.data_dir, progress=print)
    if args.backend == "lava":
        print(f"{args.model} in Lava ({args.mode}) and in hwnas ({'bit-exact integer twin' if args.mode == 'fixed' else 'float'}"
              f", pipelined), {result.samples} samples x {result.steps} steps")
    else:
        print(f"{args.model} in Norse and in hwnas (in Norse's step order), {result.samples} samples x "
              f"{result.steps} steps")
    backend = result.backend
    header = f"{'layer':10s} {'hwnas':>10s} {backend:>10s} {'rel. diff':>9s} {'identical':>9s}"
    print(header)
    print("-" * len(header))
    for name, row in result.layers.items():
        print(f"{name:10s} {row['hwnas_spikes']:10.1f} {row['backend_spikes']:10.1f} "
              f"{100 * row['relative_error']:8.2f}% {100 * row['identical_share']:8.2f}%")
    for note in silence_notes({name: row["backend_spikes"] for name, row in result.layers.items()}, result.output,
                              result.samples):
        print(note)
    if result.accuracy:
        print(f"accuracy: hwnas {100 * result.accuracy['hwnas']:.2f}%, {backend} {100 * result.accuracy['backend']:.2f}%")
    if args.save:
        if args.save.endswith(".npz"):
            save_npz(args.save, result)
        else:
            write_json_atomic(args.save, result.to_dict())
        print(f"written to {args.save}")
    return 0


def save_npz(path: str, result) -> None:
    """The backend's output spikes (samples, steps, classes) and its spikes per sample of every layer."""
    import io

    from ..io_utils import write_bytes_atomic

    arrays = {f"spikes_per_sample/{layer}": np.float64(row["backend_spikes"]) for layer, row in result.layers.items()}
    arrays["output_spikes"] = result.output_spikes.astype(np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())
