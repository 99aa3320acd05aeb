"""``hwnas compress``: prune, choose each connection's weight precision and the number of timesteps of a trained
network (LitE-SNN's spatial and temporal compression), for the target's chip."""

from __future__ import annotations

import argparse
import sys

from .common import DEVICE_HELP, device_name, non_negative_float, non_negative_int, positive_float, positive_int, \
    positive_int_list, seed_int


def add_parser(commands) -> None:
    """Declare ``hwnas compress DIR``."""
    compress = commands.add_parser(
        "compress", help="compress a trained network: pruning, per-connection weight bits and timesteps (LitE-SNN)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Compress the trained network of a run folder (its model.pt, trained with --quantize) for the target's\n"
            "chip, as LitE-SNN does (Liu et al., IJCAI 2024): every weighted connection learns a pruning mask and a\n"
            "weight precision among the target's (Loihi 2: 2-8 bits), and the network learns weights over the\n"
            "number of timesteps T (--min-timesteps..the trained T), minimising cross-entropy plus the model size\n"
            "and the bit-weighted synaptic operations (each relative to the trained network's, weighted by\n"
            "--size-weight and --synops-weight). Then each connection's bits, its mask and one T are decoded and\n"
            "the network is fine-tuned in the chip's fixed point (--qat-epochs).\n\n"
            "Writes a run folder of its own (default DIR/compressed): model.pt, architecture.json (with T),\n"
            "train.json and compress.json (bits and kept weights per connection, T, accuracy, model bits, bit-\n"
            "weighted synaptic ops, energy and cores before and after). hwnas export and hwnas validate run on it\n"
            "as on any trained run: each connection is stored and simulated in its own bits, in Lava too."),
        epilog="examples:\n  hwnas compress runs/demo\n"
               "  hwnas compress runs/demo --synops-weight 0.1 --bits 2,4,8 --out runs/demo-small\n"
               "  hwnas export runs/demo/compressed && hwnas validate runs/demo/compressed")
    compress.add_argument("run_dir", metavar="DIR", help="trained run folder (holds model.pt)")
    compress.add_argument("--out", default=None, help="folder to write (default: DIR/compressed)")
    compress.add_argument("--target", default=None, help="target (default: the run's); lists the weight precisions")
    compress.add_argument("--bits", type=positive_int_list, default=None,
                          help="candidate weight precisions, e.g. 2,4,8 (default: the target's from 2 bits)")
    compress.add_argument("--epochs", type=non_negative_int, default=4,
                          help="epochs of the joint search of masks, precisions and T (default: %(default)s)")
    compress.add_argument("--qat-epochs", type=non_negative_int, default=5,
                          help="fine-tuning epochs of the decoded network in fixed point (default: %(default)s)")
    compress.add_argument("--size-weight", type=non_negative_float, default=0.002,
                          help="weight of the model size (relative to the trained network's; default: %(default)s)")
    compress.add_argument("--synops-weight", type=non_negative_float, default=0.002,
                          help="weight of the bit-weighted synaptic operations (relative; default: %(default)s)")
    compress.add_argument("--min-timesteps", type=positive_int, default=1,
                          help="smallest T to consider (default: %(default)s)")
    compress.add_argument("--max-timesteps", type=positive_int, default=None,
                          help="largest T to consider (default: the trained T)")
    compress.add_argument("--lr", type=positive_float, default=2e-4,
                          help="Adam learning rate of the weights (default: %(default)s)")
    compress.add_argument("--arch-lr", type=positive_float, default=1e-2,
                          help="Adam learning rate of thresholds, precision and T weights (default: %(default)s)")
    compress.add_argument("--batch-size", type=positive_int, default=64, help="batch (default: %(default)s)")
    compress.add_argument("--seed", type=seed_int, default=None, help="seed (default: the run's)")
    compress.add_argument("--threads", type=positive_int, default=None,
                          help="torch's compute threads (results depend on them; default: the run's)")
    compress.add_argument("--device", type=device_name, default=None, help=DEVICE_HELP + " (default: the run's)")
    compress.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    compress.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Compress and print the figures before and after."""
    from ..api import compress
    from ..compression import CompressConfig
    from .common import config_options

    say = None if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    try:
        outcome = compress(args.run_dir, out=args.out, progress=say or False, **config_options(CompressConfig, args))
    except KeyboardInterrupt:
        print("\ninterrupted: nothing written (the model is written only when compression ends)", file=sys.stderr)
        return 130
    print(summary_table(outcome.report))
    print(f"compressed run in {outcome.folder} (compress.json: bits and kept weights per connection)")
    return 0


def summary_table(report: dict) -> str:
    """Before and after, one row per figure."""
    before, after = report["before"], report["after"]
    rows = [("test accuracy", f"{100 * before['accuracy']:.2f}%", f"{100 * after['accuracy']:.2f}%"),
            ("timesteps", str(before["timesteps"]), str(after["timesteps"])),
            ("model bits", str(before["model_bits"]), str(after["model_bits"])),
            ("bit-weighted synops/sample", f"{before['bit_synops_per_sample']:.0f}",
             f"{after['bit_synops_per_sample']:.0f}"),
            ("synops/sample", f"{before['synops_per_sample']:.0f}", f"{after['synops_per_sample']:.0f}")]
    if "energy_j" in before:
        rows += [(f"energy on {report['target']} (uJ)", f"{1e6 * before['energy_j']:.3f}", f"{1e6 * after['energy_j']:.3f}"),
                 (f"cores on {report['target']}", str(before["cores"]), str(after["cores"]))]
    from ..compression.run import chosen_bits

    bits = chosen_bits(report)
    lines = [f"{'':28s}{'before':>14s}{'after':>14s}"] + [f"{name:28s}{b:>14s}{a:>14s}" for name, b, a in rows]
    return "\n".join(lines + [f"weight bits per connection: {', '.join(map(str, bits))} (was {report['weight_bits']})"])
