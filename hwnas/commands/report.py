"""``hwnas report RUN``: the run folder as one HTML page."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    """Declare ``hwnas report RUN [--out FILE]``."""
    report = commands.add_parser(
        "report", help="write a run folder as one HTML page (plots embedded, tables of every step)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Write RUN/report.html: the search's winner and why it won (what preselected, what chose), the best\n"
            "candidates of search.csv, pareto.png, the winner per layer on the target, the training's accuracy and\n"
            "NeuroBench's metrics, and what each backend measured with validation.png. One self-contained file\n"
            "(images embedded); steps not run yet are named with the command that runs them."),
        epilog="examples:\n  hwnas report runs/demo\n  hwnas report runs/demo --out demo.html")
    report.add_argument("run_dir", metavar="RUN", help="run folder written by hwnas search or hwnas run")
    report.add_argument("--out", default=None, metavar="FILE.html", help="where to write (default: RUN/report.html)")
    report.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write the page and say where."""
    from ..api import report

    print(f"wrote {report(args.run_dir, args.out)}")
    return 0
