"""The ``hwnas`` command line: parses options and calls the library; every user error is one line, exit 2.

Each sub-command lives in ``hwnas/commands/<name>.py``; this module only assembles them.
"""

from __future__ import annotations

import argparse
import sys

from .version import __version__
from .commands.common import EXIT_USER_ERROR, OneLineParser
from .errors import HwnasError



def build_parser() -> argparse.ArgumentParser:
    """The full parser with every sub-command."""
    from .commands import compress, deploy, estimate, export, proxy_check, report, run, search, targets, train, validate

    parser = OneLineParser(
        prog="hwnas",
        description="Hardware-aware, training-free architecture search for spiking neural networks.\n\n"
                    "Typical use: `hwnas run --target loihi2` does everything on the embedded digits data:\n"
                    "`hwnas search` scores candidate spiking cells without training, simulating each in the\n"
                    "target's timing model and mapping it onto the chip's cores, then lets short trainings of the\n"
                    "8 best choose (--refine); `hwnas train` trains the winner\n"
                    "(8-bit QAT); `hwnas compress` prunes it and chooses each connection's weight bits and the\n"
                    "timesteps (LitE-SNN); `hwnas export` writes NIR (also ONNX, netx); `hwnas validate` runs it in Lava's\n"
                    "Loihi 2 simulator (fixed and float), Norse and hwnas, and compares spikes and energy per layer.\n"
                    "`hwnas report` writes a run folder as one HTML page. `hwnas proxy-check` measures whether\n"
                    "the search's signals rank cells on your data.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hwnas {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for module in (run, search, train, compress, export, deploy, validate, report, targets, estimate, proxy_check):
        module.add_parser(commands)
    return parser


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
    except OSError as exc:  # the file system refused (full disk, permissions, a path that changed under us)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
