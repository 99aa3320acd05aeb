"""The ``hwnas`` command line: parses options and calls the library; every user error is one line, exit 2."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __version__
from .errors import HwnasError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog.split()[-1]}: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USER_ERROR)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every sub-command."""
    from .data import DATASETS
    from .hw_models import builtin_targets
    from .search.names import BN_MODES, SCORE_NAMES, STRATEGIES

    parser = _Parser(
        prog="hwnas",
        description="Hardware-aware, training-free architecture search for spiking neural networks.\n\n"
                    "Typical use: `hwnas search --target loihi2` scores candidate spiking cells without training,\n"
                    "simulating each one in the target's timing model, and writes the winner to a run folder.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hwnas {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    search = commands.add_parser(
        "search", help="find a spiking cell without training (SAHD score, random or pruning search)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Search the LightSNN/SNASNet cell space (4-node cell; each of the 6 node pairs carries zero, skip or\n"
            "conv3x3, forward or as temporal feedback) inside the skeleton stem -> cell -> downsample -> cell ->\n"
            "classifier. Every candidate is simulated at initialisation on the same batches and scored from its\n"
            "binary spike codes; candidates whose codes are silent or duplicated are marked degenerate and ranked\n"
            "last. The run folder gets architecture.json (the winner), search.csv (every evaluation), report.json\n"
            "and checkpoint.json (for --resume after Ctrl-C)."),
        epilog="examples:\n"
               "  hwnas search --target loihi2                      prune search on the embedded digits data\n"
               "  hwnas search --strategy random --candidates 1000  SNASNet-style random search\n"
               "  hwnas search --dataset nmnist --data-dir ~/data   N-MNIST from ~/data/NMNIST\n"
               "  hwnas search --resume runs/search-20261123-101500 continue an interrupted search")
    group = search.add_argument_group("target and data")
    group.add_argument("--target", default="loihi2",
                       help=f"built-in target ({', '.join(builtin_targets())}) or a path to a target TOML file; "
                            "it sets the timing model the candidates are simulated in (default: %(default)s)")
    group.add_argument("--dataset", default="digits",
                       help="dataset: " + "; ".join(f"{k}: {v}" for k, v in DATASETS.items()) + " (default: %(default)s)")
    group.add_argument("--data-dir", default=None, help="folder that holds the dataset's files (not needed for digits)")
    group.add_argument("--max-samples", type=_positive_int, default=None,
                       help="read at most this many samples per split (event and CIFAR data)")
    group.add_argument("--timesteps", type=_positive_int, default=8,
                       help="steps each input is presented for (event data is binned into this many frames; "
                            "default: %(default)s)")
    group.add_argument("--encoding", choices=("rate", "direct"), default="rate",
                       help="static images: rate = Bernoulli spikes with the pixel intensity as probability, "
                            "direct = the analog image as input current every step (default: %(default)s)")
    group = search.add_argument_group("search space")
    group.add_argument("--width", type=_positive_int, default=None,
                       help="channels of stem and cells (default: 16 for inputs up to 16x16, 32 up to 64x64, else 64)")
    group.add_argument("--downsample", choices=("maxpool", "avgpool"), default="maxpool",
                       help="maxpool = OR of spikes in 2x2 (a sum-pool into threshold-0.5 neurons); avgpool = linear, "
                            "folded into the next connection (default: %(default)s)")
    group.add_argument("--no-backward", dest="allow_backward", action="store_false",
                       help="forward edges only (no temporal feedback edges in the cell)")
    group.add_argument("--timing", choices=("zero-delay", "pipelined"), default=None,
                       help="override the target's timing model: zero-delay (GPU simulators) or pipelined "
                            "(one step per connection, as on Loihi)")
    group.add_argument("--du", type=float, default=1.0, help="current decay (1 = current-free LIF; default: %(default)s)")
    group.add_argument("--dv", type=float, default=0.75, help="membrane decay (default: %(default)s)")
    group.add_argument("--theta", type=float, default=1.0, help="firing threshold (default: %(default)s)")
    group = search.add_argument_group("strategy and score")
    group.add_argument("--strategy", choices=STRATEGIES, default="prune",
                       help="prune = LightSNN pruning by importance over a supernet; random = SNASNet random "
                            "sampling of --candidates cells (default: %(default)s)")
    group.add_argument("--candidates", type=_positive_int, default=100,
                       help="cells scored by the random strategy (default: %(default)s)")
    group.add_argument("--score", choices=SCORE_NAMES, default="sahd",
                       help="sahd = sparsity-aware Hamming distance (SNASNet/LightSNN); naswot = plain Hamming "
                            "kernel of the concatenated codes (default: %(default)s)")
    group.add_argument("--batch-size", type=_positive_int, default=64,
                       help="samples per scoring batch, i.e. kernel size (LightSNN: 64; default: %(default)s)")
    group.add_argument("--repeats", type=_positive_int, default=2,
                       help="scoring batches whose scores are averaged (SNASNet: 2; default: %(default)s)")
    group.add_argument("--bn-mode", choices=BN_MODES, default="batch",
                       help="batch = batch-norm with the scoring batch's statistics (as SNASNet scores; keeps "
                            "untrained nets from going silent); identity = fresh batch-norm (default: %(default)s)")
    group.add_argument("--no-reset", dest="reset_state", action="store_false",
                       help="run the repeats as one stream without resetting neuron state in between")
    group = search.add_argument_group("run")
    group.add_argument("--seed", type=int, default=0, help="seed of everything random (default: %(default)s)")
    group.add_argument("--out", default=None, help="run folder (default: runs/search-<date>-<time>)")
    group.add_argument("--resume", metavar="DIR", default=None,
                       help="continue the search in DIR with its recorded options, re-scoring nothing")
    group.add_argument("--quiet", action="store_true", help="no progress bar")
    search.set_defaults(handler=_cmd_search)
    return parser


def _cmd_search(args: argparse.Namespace) -> int:
    from .search.runner import SearchConfig, run_search

    if args.resume:
        resume_dir = Path(args.resume)
        if resume_dir.is_file():
            resume_dir = resume_dir.parent  # accept a file of the run folder, e.g. its checkpoint.json
        config, out = None, resume_dir
    else:
        config = SearchConfig(
            target=args.target, dataset=args.dataset, data_dir=args.data_dir, strategy=args.strategy,
            candidates=args.candidates, timesteps=args.timesteps, width=args.width, downsample=args.downsample,
            encoding=args.encoding, timing=args.timing, allow_backward=args.allow_backward, score=args.score,
            batch_size=args.batch_size, repeats=args.repeats, bn_mode=args.bn_mode, reset_state=args.reset_state,
            du=args.du, dv=args.dv, theta=args.theta, seed=args.seed, max_samples=args.max_samples,
        )
        out = Path(args.out) if args.out else Path("runs") / time.strftime("search-%Y%m%d-%H%M%S")
    bar = _ProgressBar(enabled=not args.quiet)
    try:
        outcome = run_search(config or SearchConfig(), out, resume=bool(args.resume), progress=bar.update)
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted: progress saved in {out / 'checkpoint.json'}; continue with: hwnas search --resume {out}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        bar.close()
    report = outcome.report
    winner = outcome.winner
    print(f"winner: {winner['cell']}")
    print(f"  {report['config']['score']} score {winner['score']:.4g}, firing rate at init {winner['firing_rate']:.3f}, "
          f"{winner['spikes_per_sample']:.0f} spikes and {winner['synops_per_sample']:.0f} synaptic ops per sample, "
          f"latency {winner['latency_steps']} steps ({report['timing']} timing, target {report['target']['name']})")
    print(f"  {report['evaluations']} evaluations in {report['search_seconds']:.1f} s; "
          f"degenerate (silent or duplicate spike codes): {100 * report['degenerate_share']:.1f}%")
    print(f"results in {outcome.out_dir}/: architecture.json, search.csv, report.json")
    return 0


class _ProgressBar:
    """A tqdm bar on stderr that the search drives through its progress callback."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def update(self, done: int, total: int | None, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="eval", desc="search", file=sys.stderr, dynamic_ncols=True,
                            mininterval=0.5)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hwnas`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return args.handler(args)
    except HwnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
