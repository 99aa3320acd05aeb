"""``hwnas targets``: list the built-in targets, or show one with its sources."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    """Declare ``hwnas targets [show NAME_OR_PATH]``."""
    targets = commands.add_parser(
        "targets", help="list the built-in hardware targets, or show one (`hwnas targets show loihi2`)",
        description="Without arguments: one line per built-in target. `show NAME_OR_PATH` prints a built-in "
                    "target's file with the source of every figure, or checks and summarises your own TOML file.")
    targets.add_argument("action", nargs="?", choices=("show",), help="show one target")
    targets.add_argument("name", nargs="?", help="built-in target name or path to a target TOML file")
    targets.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the list, or one target."""
    from ..errors import OptionError
    from ..hw_models.targets import builtin_target_text, builtin_targets, load_target

    if args.action is None:
        for name in builtin_targets():
            target = load_target(name)
            if target.is_hardware:
                limits = (f"{target.chip.cores} cores, {target.core.neurons} neurons/core, "
                          f"{target.weight_bits}-bit weights")
            else:
                limits = "no hardware limits"
            print(f"{name:10s} {target.timing:10s} {limits}: {target.description}")
        print("\n`hwnas targets show NAME` prints a target with its sources; --target also takes your own TOML file.")
        return 0
    if not args.name:
        raise OptionError("targets show: name a target, e.g. hwnas targets show loihi2")
    target = load_target(args.name)  # validates, also a user's file
    if args.name in builtin_targets():
        print(builtin_target_text(args.name), end="")
    else:
        print(f"# {args.name}: valid target '{target.name}' ({target.timing} timing)")
        for table, values in target.to_dict().items():
            if isinstance(values, dict):
                print(f"[{table}]")
                for key, value in values.items():
                    print(f"{key} = {value!r}")
    return 0
