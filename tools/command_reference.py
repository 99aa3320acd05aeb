"""Write docs/commands.md, the command reference, from the command line's own --help texts; ``--check`` fails
(exit 1) when the file is stale instead of writing it. tests/test_docs.py runs the check.

    python tools/command_reference.py          # regenerate docs/commands.md
    python tools/command_reference.py --check  # is it current?
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "commands.md"
WIDTH = 110  # help is wrapped to this many columns, whatever the terminal


def reference() -> str:
    """The Markdown text: the top-level help, then each sub-command's, in the order ``hwnas --help`` lists them."""
    os.environ["COLUMNS"] = str(WIDTH)  # argparse wraps to the terminal's width
    sys.path.insert(0, str(ROOT))
    from hwnas.cli import build_parser

    parser = build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    parts = ["# hwnas command reference", "",
             "Generated from the command line's `--help` by `python tools/command_reference.py`; "
             "`tests/test_docs.py` fails when it is stale. The user guide (docs/guide.md) explains when to use what.",
             "", "## hwnas", "", "```text", parser.format_help().rstrip(), "```"]
    for name, sub in commands.choices.items():
        parts += ["", f"## hwnas {name}", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(parts) + "\n"


def main() -> int:
    check = "--check" in sys.argv[1:]
    text = reference()
    if check:
        if not REFERENCE.is_file() or REFERENCE.read_text(encoding="utf-8") != text:
            print(f"{REFERENCE.relative_to(ROOT)} is stale: run python tools/command_reference.py", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(text, encoding="utf-8")
    print(f"wrote {REFERENCE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
