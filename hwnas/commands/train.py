"""``hwnas train``: train a searched architecture with surrogate gradients, then quantisation-aware."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..arch.choices import ENCODINGS
from ..data.registry import DATASETS
from .common import DEVICE_HELP, device_name, non_negative_float, positive_float, positive_int, seed_int

IMPORT_OPTIONS = ("dataset", "data_dir", "max_samples", "timesteps", "encoding", "dt", "from_scratch")


def add_parser(commands) -> None:
    """Declare ``hwnas train DIR``."""
    train = commands.add_parser(
        "train", help="train the winner of a search run (BPTT, surrogate gradients, 8-bit QAT for Loihi)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train the architecture in a search run folder on the search's dataset, in the target's timing model:\n"
            "float training with batch-norm, then (for targets with integer weights, e.g. Loihi) batch-norm folded\n"
            "into the convolutions and fine-tuning with weights fake-quantised to the target's fixed-point format.\n"
            "Keeps the best checkpoint (validation accuracy) as DIR/model.pt and writes DIR/train.json with test\n"
            "accuracy and spikes per inference.\n\n"
            "--from MODEL.nir trains a network another tool wrote (snnTorch, Norse, sinabs, an hwnas export) the same\n"
            "way, from its weights (or new ones: --from-scratch), into the new folder DIR; export, validate, estimate\n"
            "and report then read DIR as any trained run. Strided and grouped convolutions, sum pooling before a\n"
            "layer, Linear and Affine train; the graph's neurons (LIF, CubaLIF, IF) keep their parameters."),
        epilog="examples:\n  hwnas search --out runs/demo && hwnas train runs/demo\n"
               "  hwnas train runs/demo --pick 2 --out runs/demo-pick2   (another point of the front, beside the winner)\n"
               "  hwnas train runs/paper-cnn --from cnn_sinabs.nir --dt 1 --dataset nmnist --data-dir data "
               "--timesteps 30")
    train.add_argument("run_dir", metavar="DIR",
                       help="search run folder (holds architecture.json), or with --from the new folder to train in")
    train.add_argument("--pick", type=positive_int, default=None, metavar="K",
                       help="train point K (1: the cheapest) of the accuracy-energy front of the search's refined "
                            "candidates instead of its winner; an out-of-range K lists the front")
    train.add_argument("--out", default=None, metavar="NEW",
                       help="train in the new folder NEW instead of DIR: the search's report.json and search.csv "
                            "are copied there with the architecture trained (the winner or --pick's), and DIR keeps "
                            "its own model (another seed, recipe or point of the front beside the first)")
    imported = train.add_argument_group("another tool's network (--from)")
    imported.add_argument("--from", dest="source", metavar="MODEL.nir", default=None,
                          help="train this NIR graph instead of a search's winner")
    imported.add_argument("--dataset", default=None, choices=DATASETS, metavar="NAME",
                          help=f"dataset to train on: {', '.join(DATASETS)} (default: digits)")
    imported.add_argument("--data-dir", default=None, help="folder that holds the dataset's files")
    imported.add_argument("--max-samples", type=positive_int, default=None, help="use at most this many samples")
    imported.add_argument("--timesteps", type=positive_int, default=None,
                          help="steps per sample (default: the graph's, if hwnas wrote it, else 8)")
    imported.add_argument("--encoding", choices=ENCODINGS, default=None,
                          help="how images become spikes (default: the graph's, else rate)")
    imported.add_argument("--dt", type=positive_float, default=None,
                          help="seconds per step the graph's time constants assume (default: its hwnas.dt_s; graphs "
                               "in per-step units, as sinabs and snnTorch write them, need --dt 1)")
    imported.add_argument("--from-scratch", action="store_true",
                          help="train from new (seeded) weights instead of the graph's")
    train.add_argument("--epochs", type=positive_int, default=20, help="float training epochs (default: %(default)s)")
    train.add_argument("--qat-epochs", type=int, default=5,
                       help="quantisation-aware fine-tuning epochs after folding batch-norm (default: %(default)s)")
    train.add_argument("--lr", type=non_negative_float, default=2e-3,
                       help="Adam learning rate; fine-tuning uses a tenth (default: %(default)s)")
    train.add_argument("--batch-size", type=positive_int, default=64, help="training batch (default: %(default)s)")
    train.add_argument("--target", default=None,
                       help="target (default: the search's, with --from loihi2); sets timing and weight bits")
    quant = train.add_mutually_exclusive_group()
    quant.add_argument("--quantize", dest="quantize", action="store_true", default=None,
                       help="quantisation-aware fine-tuning (default for targets with integer weights)")
    quant.add_argument("--no-quantize", dest="quantize", action="store_false", help="keep float weights")
    train.add_argument("--seed", type=seed_int, default=None, help="seed (default: the search's, with --from 0)")
    train.add_argument("--threads", type=positive_int, default=None,
                       help="torch's compute threads (results depend on them; default: the search's)")
    train.add_argument("--device", type=device_name, default=None, help=DEVICE_HELP + " (default: the search's)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    train.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train through the Python API and print the figures."""
    from ..api import train
    from ..errors import OptionError
    from ..metrics import summary_line
    from ..training import TrainConfig
    from .common import config_options

    say = None if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    given = [name for name in IMPORT_OPTIONS if getattr(args, name) not in (None, False)]
    if args.source is None and given:
        raise OptionError(f"--{given[0].replace('_', '-')} applies to train --from MODEL.nir (a search run folder "
                          "trains on the search's data)")
    options = config_options(TrainConfig, args)
    if say is None and args.source is None:  # --quiet silences the epochs, not which point of the front trains
        say = lambda message: message.startswith("picked point") and print(message, file=sys.stderr)  # noqa: E731
    try:
        if args.source is not None:
            if args.pick is not None:
                raise OptionError("--pick chooses among a search's candidates; it does not apply to --from")
            if args.out is not None:
                raise OptionError("--out trains a search's architecture in a new folder; with --from, DIR is the "
                                  "new folder")
            imported = {name: getattr(args, name) for name in IMPORT_OPTIONS if name != "dataset"
                        and getattr(args, name) is not None}
            outcome = train(Path(args.source), out=args.run_dir, data=args.dataset, progress=say or False, graph=True,
                            **imported, **options)
        else:
            outcome = train(Path(args.run_dir), out=args.out, pick=args.pick, progress=say or False, graph=False,
                            **options)
    except KeyboardInterrupt:
        print("\ninterrupted: no model written (model.pt is written only when training ends)", file=sys.stderr)
        return 130
    report = outcome.report
    quant = f"{report['weight_bits']}-bit quantised weights" if report["quantized"] else "float weights"
    print(f"trained {outcome.model.architecture.key} on {report['dataset']['name']} ({report['timing']} timing, {quant})")
    print(f"  test accuracy {100 * report['test_accuracy']:.2f}% (validation {100 * report['val_accuracy']:.2f}%), "
          f"{report['spikes_per_sample']:.0f} spikes and {report['synops_per_sample']:.0f} synaptic ops per "
          f"sample, {report['seconds']:.0f} s")
    print(f"  {summary_line(report['neurobench'])}")
    print(f"model in {outcome.folder}/model.pt, figures in {outcome.folder}/train.json")
    return 0
