"""``hwnas run``: search, train, export and validate in one go, and one summary table at the end."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..limits import DEFAULT_THREADS
from .common import DEVICE_HELP, device_name, positive_float, positive_int, seed_int


def add_parser(commands) -> None:
    """Declare ``hwnas run --target loihi2``."""
    run_parser = commands.add_parser(
        "run", help="the whole flow: search, train, export to NIR, run in Lava and validate; one summary",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Chains the steps with their default settings, each printing as it does on its own:\n"
            "  hwnas search --target T --out DIR      hardware-aware search, a screening and short trainings choose\n"
            "                                         (about 5 min on digits, 2 cores)\n"
            "  hwnas train DIR                        surrogate-gradient training, then 8-bit QAT in Loihi's\n"
            "                                         fixed-point arithmetic (about 4 min)\n"
            "  hwnas export DIR --format nir          DIR/model.nir\n"
            "  hwnas validate DIR --target T          the trained model vs hwnas vs Lava fixed/float vs Norse, energy\n"
            "                                         (about 6 min)\n"
            "With --compress, then also:\n"
            "  hwnas compress DIR                     pruning, per-connection weight bits and T (LitE-SNN), written\n"
            "                                         to DIR/compressed, exported and validated there too\n"
            "A step whose result is already in DIR is skipped, so an interrupted run continues where it stopped."),
        epilog="examples:\n  hwnas run --target loihi2\n  hwnas run --target loihi --out runs/loihi1 --samples 50\n"
               "  hwnas run --target xylo-audio3 --dataset digits-rows   (a SynSense Xylo core: XyloSim validates)")
    run_parser.add_argument("--target", default="loihi2", help="target chip (default: %(default)s)")
    run_parser.add_argument("--dataset", default=None,
                            help="dataset (default: digits; digits-rows on a Xylo target, whose core takes 16 inputs)")
    run_parser.add_argument("--data-dir", default=None, help="folder that holds the dataset's files")
    run_parser.add_argument("--out", default=None, help="run folder (default: runs/run-<date>-<time>)")
    run_parser.add_argument("--timesteps", type=positive_int, default=None,
                            help="the search's --timesteps: steps per sample (default: the search's, 8)")
    run_parser.add_argument("--samples", type=positive_int, default=1000,
                            help="test samples for the validation (default: up to %(default)s; digits has 270)")
    run_parser.add_argument("--seed", type=seed_int, default=0, help="seed of every step (default: %(default)s)")
    run_parser.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS,
                            help="torch's compute threads of every step (results depend on them; default: %(default)s)")
    run_parser.add_argument("--device", type=device_name, default="auto",
                            help=DEVICE_HELP + "; the search's and the training's (default: %(default)s)")
    run_parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                            help="the search's --workers: a local Ray cluster of N processes (default: none)")
    run_parser.add_argument("--budget-minutes", type=positive_float, default=None, metavar="M",
                            help="the search's --budget-minutes: its trainings use the share of the training split "
                                 "that fits M minutes by its estimate (default: none)")
    run_parser.add_argument("--compress", action="store_true",
                            help="also compress the trained network (hwnas compress's defaults) and validate it")
    run_parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the steps that have no result yet, then print the summary."""
    from ..backends.lava import lava_missing
    from ..io_utils import check_writable
    from ..html_report import write_report
    from ..run_folder import RunFolder

    from ..hw_models import load_target

    dataset = args.dataset or ("digits-rows" if load_target(args.target).network == "dense" else "digits")
    out = Path(args.out) if args.out else Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")
    folder = RunFolder(out)
    missing_lava = lava_missing()
    parser = _steps_parser()
    steps = [
        ("search", folder.report,
         ["search", "--target", args.target, "--dataset", dataset, "--out", str(out), "--seed", str(args.seed),
          "--threads", str(args.threads), "--device", args.device]
         + (["--workers", str(args.workers)] if args.workers else [])
         + (["--budget-minutes", f"{args.budget_minutes:g}"] if args.budget_minutes else [])
         + (["--data-dir", args.data_dir] if args.data_dir else [])
         + (["--timesteps", str(args.timesteps)] if args.timesteps else [])),
        ("train", folder.model, ["train", str(out), "--seed", str(args.seed), "--target", args.target]),
        ("export", folder.export("nir"), ["export", str(out), "--format", "nir"]),
        ("validate", folder.validation,
         ["validate", str(out), "--target", args.target, "--samples", str(args.samples), "--seed", str(args.seed)]
         + (["--data-dir", args.data_dir] if args.data_dir else [])
         + (["--skip", "lava_fixed,lava_float"] if missing_lava else [])),
    ]
    if args.compress:
        from ..compression.run import COMPRESS_REPORT, DEFAULT_FOLDER, candidate_bits

        candidate_bits(None, load_target(args.target))  # a target without precisions: refused before any step
        small = RunFolder(out / DEFAULT_FOLDER)
        steps += [
            ("compress", small / COMPRESS_REPORT, ["compress", str(out), "--seed", str(args.seed), "--target",
                                                   args.target, "--out", str(small.path)]),
            ("export compressed", small.export("nir"), ["export", str(small.path), "--format", "nir"]),
            ("validate compressed", small.validation,
             ["validate", str(small.path), "--target", args.target, "--samples", str(args.samples), "--seed",
              str(args.seed)] + (["--data-dir", args.data_dir] if args.data_dir else [])
             + (["--skip", "lava_fixed,lava_float"] if missing_lava else [])),
        ]
    if missing_lava:
        print(f"note: {missing_lava}; validate compares hwnas, its integer twin and Norse only")
    check_writable(out, "--out", folder=True)
    seconds = {}
    with folder.writing("run"):  # one writer for all the steps
        for name, result, argv in steps:
            if result.is_file():
                print(f"== {name}: {result} exists, skipped")
                continue
            print(f"== hwnas {' '.join(argv)}", flush=True)
            started = time.perf_counter()
            step_args = parser.parse_args(argv)
            code = step_args.handler(step_args)
            seconds[name] = time.perf_counter() - started
            if code != 0:
                print(f"== {name} stopped with exit code {code}; fix it and run the same command again to continue")
                return code
        page = write_report(out)
    print_summary(out, seconds)
    print(f"one page with every step's figures and plots: {page}")
    return 0


def _steps_parser() -> argparse.ArgumentParser:
    """A parser of the sub-commands this one chains, each declared by its own module."""
    from . import compress, export, search, train, validate
    from .common import OneLineParser

    parser = OneLineParser(prog="hwnas")
    commands = parser.add_subparsers(dest="command", parser_class=OneLineParser)
    for module in (search, train, compress, export, validate):
        module.add_parser(commands)
    return parser


def print_summary(out: Path, seconds: dict[str, float]) -> None:
    """One table: what the search predicted, what training reached, what Lava measured."""
    from ..run_folder import RunFolder

    folder = RunFolder(out)
    report = folder.search_report()
    trained = folder.read_json(folder.train_report)
    validation = folder.read_json(folder.validation)
    pairs = validation["pairs"]
    rows = [
        ("architecture", report["winner"]["cell"]),
        ("target", report["target"]["name"]),
        ("search: energy predicted (untrained)", _uj(report.get("estimate", {}).get("totals", {}).get("energy_j"))),
        ("search: energy after refinement", _uj(report["refined_estimate"]["energy_j"])
         + f" ({report['refined_estimate']['training_epochs']}-epoch training)" if "refined_estimate" in report else "-"),
        ("train: test accuracy", f"{100 * trained['test_accuracy']:.2f}%"),
        *(_xylo_rows(validation) if "trained/hwnas_xylo" in pairs else _lava_rows(validation)),
        *_compressed_rows(folder),
        ("time per step", ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) or "all steps were done before"),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"\n== summary of {out}")
    for label, value in rows:
        print(f"{label:{width}s}  {value}")


def _lava_rows(validation: dict) -> list[tuple[str, str]]:
    """The summary's rows of a validation in Lava (and Norse)."""
    pairs, energy = validation["pairs"], validation.get("energy", {})
    return [("Lava fixed-point: accuracy", f"{100 * validation['accuracy'].get('lava_fixed', float('nan')):.2f}%"
             f" on {validation['samples']} test samples"),
            ("trained model = Lava fixed", _verdict(pairs.get("trained/lava_fixed"))),
            ("hwnas = Lava float (rasters)", _verdict(pairs.get("hwnas/lava_float"))),
            ("hwnas integer twin = Lava fixed", _verdict(pairs.get("hwnas_int/lava_fixed"))),
            ("float arithmetic vs Lava fixed", _worst(pairs.get("hwnas/lava_fixed"))),
            ("Norse vs hwnas in Norse's order", _worst(pairs.get("norse"))),
            ("energy predicted by hwnas (trained)", _uj(energy.get("predicted_j"))),
            ("energy of Lava-measured spikes", _uj(energy.get("measured_lava_fixed_j"))
             + (f" (prediction error {100 * energy['prediction_error']:+.2f}%)" if energy else ""))]


def _xylo_rows(validation: dict) -> list[tuple[str, str]]:
    """The summary's rows of a validation on a Xylo core (hwnas' twin and SynSense's XyloSim)."""
    pairs, energy, accuracy = validation["pairs"], validation.get("energy", {}), validation["accuracy"]
    return [("XyloSim: accuracy", (f"{100 * accuracy['xylosim']:.2f}%" if "xylosim" in accuracy else "not run")
             + f" on {validation['samples']} test samples"),
            ("trained model = hwnas' Xylo twin", _verdict(pairs.get("trained/hwnas_xylo"))),
            ("hwnas' Xylo twin = XyloSim", _verdict(pairs.get("hwnas_xylo/xylosim"))),
            ("trained model = XyloSim", _verdict(pairs.get("trained/xylosim"))),
            ("energy predicted by hwnas (trained)", _uj(energy.get("predicted_j"))),
            (f"energy of {energy.get('measured_on', 'xylosim')}'s spikes", _uj(energy.get("measured_j"))
             + (f" (prediction error {100 * energy['prediction_error']:+.2f}%)" if energy else ""))]


def _compressed_rows(folder) -> list[tuple[str, str]]:
    """The compressed network's rows, when ``hwnas run --compress`` made one."""
    from ..compression.run import COMPRESS_REPORT, DEFAULT_FOLDER, chosen_bits
    from ..run_folder import RunFolder

    small = RunFolder(folder.path / DEFAULT_FOLDER)
    report = small.read_json(small / COMPRESS_REPORT)
    if not report:
        return []
    before, after = report["before"], report["after"]
    pairs = small.read_json(small.validation, {}).get("pairs", {})
    return [("compressed: test accuracy", f"{100 * after['accuracy']:.2f}% (T {report['timesteps']}, bits "
             f"{', '.join(map(str, chosen_bits(report)))})"),
            ("compressed: model bits, bit-weighted synops",
             f"{after['model_bits']} of {before['model_bits']}, {after['bit_synops_per_sample']:.0f} of "
             f"{before['bit_synops_per_sample']:.0f} per sample"),
            ("compressed: energy predicted", _uj(after.get("energy_j"))),
            ("compressed: trained = Lava fixed", _verdict(pairs.get("trained/lava_fixed")))]


def _uj(value) -> str:
    return f"{1e6 * value:.3f} uJ per inference" if value else "-"


def _verdict(pair) -> str:
    if not pair:
        return "not run"
    return "identical" if pair["identical"] else f"DIFFERENT: {_worst(pair)}"


def _worst(pair) -> str:
    if not pair:
        return "not run"
    rows = pair["layers"].values()
    return (f"worst layer spike-count error {100 * max(r['relative_error'] for r in rows):.2f}%, "
            f"lowest rate cosine {min(r['rate_cosine'] for r in rows):.4f}")
