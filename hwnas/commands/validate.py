"""``hwnas validate``: predicted versus measured spikes and energy of a trained run, on every backend."""

from __future__ import annotations

import argparse
import sys

from .common import positive_int, seed_int

LABELS = {"hwnas_norse_order": "hwnas_norse"}  # column headings where a backend's name is too wide
SKIPPABLE = ("trained", "hwnas_int", "lava_fixed", "lava_float", "norse", "xylosim")
MEASURED_ON = {"xylosim": "SynSense's XyloSim", "hwnas_xylo": "hwnas' twin of the Xylo core"}


def add_parser(commands) -> None:
    """Declare ``hwnas validate DIR --target loihi2``."""
    validate = commands.add_parser(
        "validate", help="run the trained network in hwnas, Lava (fixed and float) and Norse; compare and estimate",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run the same test samples through the trained network and its export (DIR/model.nir, written by\n"
            "`hwnas export`) in:\n"
            "  trained     the trained network (DIR/model.pt) as it trained: Loihi's fixed-point arithmetic after\n"
            "              quantisation-aware training\n"
            "  hwnas       hwnas' simulator of the export, the chip's pipelined timing, (quantised) float weights\n"
            "  hwnas_int   hwnas' bit-exact integer twin of Loihi's fixed-point arithmetic\n"
            "  lava_fixed  Lava's Loihi 2 simulator, bit-accurate fixed-point models\n"
            "  lava_float  Lava's floating-point models\n"
            "  norse       Norse (its executor's step order; compared with hwnas in that order)\n"
            "and print per layer the spikes per sample in each (* marks layers fed only by feedback), then per pair\n"
            "the relative count error, the cosine similarity of per-neuron rates and the share of coincident spikes.\n"
            "Expected: trained = hwnas_int = lava_fixed and hwnas = lava_float exactly; hwnas vs lava_fixed shows\n"
            "what computing the same weights in float changes.\n"
            "With a hardware target, the energy per inference predicted by hwnas is set next to the energy of the\n"
            "spikes measured in Lava fixed-point. Writes DIR/validation.json and DIR/validation.png.\n"
            "A run trained for a Xylo core (--target xylo-audio3, xylo-imu) runs instead in:\n"
            "  trained     the trained network in Xylo's integers\n"
            "  hwnas_xylo  hwnas' integer twin of the Xylo core\n"
            "  xylosim     SynSense's XyloSim on rockpool's mapping of DIR/model.nir (needs hwnas[xylo])\n"
            "Expected: all three identical on every layer."),
        epilog="examples:\n  hwnas validate runs/demo --target loihi2\n"
               "  hwnas validate runs/demo --samples 50 --skip norse,lava_float")
    validate.add_argument("run_dir", metavar="DIR", help="trained run folder with model.nir (hwnas export DIR)")
    validate.add_argument("--target", default=None,
                          help="target for the energy estimate (default: the one the run was searched for)")
    validate.add_argument("--samples", type=positive_int, default=100,
                          help="test samples (default: %(default)s; Lava runs about 30 samples/s on 2 cores)")
    validate.add_argument("--dataset", default=None, help="dataset (default: the one the run was searched on)")
    validate.add_argument("--data-dir", default=None, help="folder that holds the dataset's files")
    validate.add_argument("--seed", type=seed_int, default=0, help="seed of the input encoding (default: %(default)s)")
    validate.add_argument("--skip", default="", help=f"comma-separated backends to leave out ({', '.join(SKIPPABLE)})")
    validate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Validate the run folder through the Python API, print the tables and say what was written."""
    from ..api import validate
    from ..backends.lava import require_lava
    from ..errors import OptionError
    from ..run_folder import RunFolder

    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    unknown = skip - set(SKIPPABLE)
    if unknown:
        raise OptionError(f"--skip: unknown backend '{sorted(unknown)[0]}' (known: {', '.join(SKIPPABLE)})")
    backends = tuple(b for b in SKIPPABLE if b not in skip and b != "trained")
    require_lava(backends, "pass --skip {lava}")
    folder = RunFolder(args.run_dir)
    result = validate(folder, args.dataset, target=args.target, backends=backends, samples=args.samples,
                      seed=args.seed, data_dir=args.data_dir, trained="trained" not in skip,
                      progress=lambda message: print(message, file=sys.stderr))
    print_report(result, imported="imported" in folder.search_report())
    print(f"written: {folder.validation}, {folder.validation_plot}")
    return 0


def print_report(result, imported: bool = False) -> None:
    """The per-layer table of spikes per sample, the pair checks, accuracy and energy (``imported``: the run's
    recorded estimate is of the graph ``hwnas train --from`` read, not of a search's untrained winner)."""
    from ..backends.compare import silence_notes
    from ..backends.validate import BACKEND_COLUMNS

    columns = [b for b in BACKEND_COLUMNS if b in result.spikes]
    print(f"{result.samples} samples x {result.steps} steps (+{result.window - result.steps} pipeline steps); "
          "spikes per sample:")
    header = f"{'layer':10s}" + "".join(f"{LABELS.get(c, c):>12s}" for c in columns)
    print(header)
    print("-" * len(header))
    for layer in result.layers:
        label = layer + ("*" if layer in result.feedback_only else "")
        print(f"{label:10s}" + "".join(f"{result.spikes[c].get(layer, float('nan')):12.1f}" for c in columns))
    if result.feedback_only:
        print("* fed only by feedback")
    silent = {layer: max(result.spikes[c].get(layer, 0.0) for c in columns) for layer in result.layers}
    for note in silence_notes(silent, result.output, result.samples):
        print(note)
    if "hwnas_norse_order" in columns:
        print("hwnas_norse: hwnas' simulator in Norse's step order, the reference of the norse column")
    if result.accuracy:
        print("accuracy:  " + ", ".join(f"{name} {100 * value:.2f}%" for name, value in result.accuracy.items()))
    print()
    for key, pair in result.pairs.items():
        rows = pair["layers"]
        worst_error = max(r["relative_error"] for r in rows.values())
        worst_cos = min(r["rate_cosine"] for r in rows.values())
        if key == "norse":
            print(f"norse vs hwnas in Norse's step order: worst layer count error {100 * worst_error:.2f}%, "
                  f"lowest rate cosine {worst_cos:.4f}")
            continue
        coincident = min(r["coincident_share"] for r in rows.values())
        verdict = "IDENTICAL rasters" if pair["identical"] else "rasters differ"
        print(f"{key:22s} {verdict:18s} worst layer count error {100 * worst_error:6.2f}%, lowest rate cosine "
              f"{worst_cos:.4f}, lowest coincident share {100 * coincident:6.2f}%")
    if result.energy:
        e = result.energy
        line = (f"\nenergy per inference on {e['target']}: predicted by hwnas {1e6 * e['predicted_j']:.3f} uJ, "
                f"measured spikes in {MEASURED_ON.get(e.get('measured_on'), 'Lava fixed-point')} "
                f"{1e6 * e.get('measured_j', e.get('measured_lava_fixed_j', 0.0)):.3f} uJ "
                f"(prediction error {100 * e['prediction_error']:+.2f}%)")
        if e.get("search_predicted_j"):
            what = "the graph as read was estimated at" if imported else "the search predicted"
            line += (f"; {what} {1e6 * e['search_predicted_j']:.3f} uJ before training "
                     f"({100 * e['search_prediction_error']:+.1f}%)")
        print(line)
