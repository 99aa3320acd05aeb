"""``hwnas validate``: predicted versus measured spikes and energy of a trained run, on every backend."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import positive_int, seed_int

BACKEND_COLUMNS = ("trained", "hwnas", "hwnas_int", "lava_fixed", "lava_float", "hwnas_norse_order", "norse")
LABELS = {"hwnas_norse_order": "hwnas_norse"}  # column headings where a backend's name is too wide
SKIPPABLE = ("trained", "hwnas_int", "lava_fixed", "lava_float", "norse")


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
            "spikes measured in Lava fixed-point. Writes DIR/validation.json and DIR/validation.png."),
        epilog="examples:\n  hwnas validate runs/demo --target loihi2\n"
               "  hwnas validate runs/demo --samples 50 --skip norse,lava_float")
    validate.add_argument("run_dir", metavar="DIR", help="trained run folder with model.nir (hwnas export DIR)")
    validate.add_argument("--target", default="loihi2", help="target for the energy estimate (default: %(default)s)")
    validate.add_argument("--samples", type=positive_int, default=100,
                          help="test samples (default: %(default)s; Lava runs about 30 samples/s on 2 cores)")
    validate.add_argument("--dataset", default=None, help="dataset (default: the one the run was searched on)")
    validate.add_argument("--data-dir", default=None, help="folder that holds the dataset's files")
    validate.add_argument("--seed", type=seed_int, default=0, help="seed of the input encoding (default: %(default)s)")
    validate.add_argument("--skip", default="", help=f"comma-separated backends to leave out ({', '.join(SKIPPABLE)})")
    validate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load the run and its data, validate, print, write the JSON and the plot."""
    from ..data import load_dataset
    from ..backends.compare import describe_samples, inputs_from
    from ..backends.lava import require_lava
    from ..backends.validate import validate
    from ..errors import OptionError
    from ..formats.nir import check_run_memory, read_graph, recorded_architecture, recorded_dt
    from ..hw_models.targets import load_target
    from ..io_utils import write_json_atomic
    from ..limits import recorded_threads
    from ..run_folder import RunFolder
    from ..sim.seeding import computing_threads

    run_dir = Path(args.run_dir)
    folder = RunFolder(run_dir)
    model = folder.export("nir")
    if not model.is_file():
        raise OptionError(f"no model.nir in {run_dir}: run `hwnas train {run_dir}` and `hwnas export {run_dir}` first")
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    unknown = skip - set(SKIPPABLE)
    if unknown:
        raise OptionError(f"--skip: unknown backend '{sorted(unknown)[0]}' (known: {', '.join(SKIPPABLE)})")
    backends = tuple(b for b in SKIPPABLE if b not in skip and b != "trained")
    require_lava(backends, "pass --skip {lava}")
    target = load_target(args.target)
    graph = read_graph(model)
    arch = recorded_architecture(graph)
    if arch is None:
        raise OptionError(f"{model} records no hwnas architecture: validate runs hwnas' own exports")
    folder.load_architecture()  # a search run folder, as `hwnas train` made it
    config = folder.search_config()
    dataset = args.dataset or config.get("dataset") or "digits"
    check_run_memory(graph, args.samples, arch.timesteps, len(backends) + 3, "validate")
    # split as the search split (its seed), so that the test samples are the ones training never saw
    splits = load_dataset(dataset, args.data_dir or config.get("data_dir"), arch.timesteps,
                          int(config.get("seed", args.seed)))
    folder.check_data(splits.summary(), sizes=False)  # validate reads every sample; --max-samples may differ
    inputs, labels = inputs_from(splits, args.samples, arch.timesteps, arch.encoding, args.seed)
    print(describe_samples(splits, args.samples, args.seed))
    search_estimate = folder.search_estimate()
    dt_s = recorded_dt(graph)
    if dt_s is None:
        raise OptionError(f"{model} records no time step (hwnas.dt_s): export it again with hwnas export")
    threads = recorded_threads(config)
    trained = None
    if "trained" not in skip and folder.model.is_file():
        from ..training.model_file import load_model

        if folder.model.stat().st_mtime > model.stat().st_mtime:
            raise OptionError(f"{model} is older than {folder.model}: run `hwnas export {run_dir}` again (or pass "
                              "--skip trained)")
        trained = load_model(folder.model)[0]
    with folder.writing("validate"), computing_threads(threads):
        result = validate(graph, inputs, labels, dt_s, target, backends, progress=lambda m: print(m, file=sys.stderr),
                          search_estimate=search_estimate, trained=trained)
        print_report(result, imported="imported" in folder.search_report())
        write_json_atomic(folder.validation, result.to_dict())
        plot(result, folder.validation_plot)
    print(f"written: {folder.validation}, {folder.validation_plot}")
    return 0


def print_report(result, imported: bool = False) -> None:
    """The per-layer table of spikes per sample, the pair checks, accuracy and energy (``imported``: the run's
    recorded estimate is of the graph ``hwnas train --from`` read, not of a search's untrained winner)."""
    from ..backends.compare import silence_notes

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
                f"measured spikes in Lava fixed-point {1e6 * e['measured_lava_fixed_j']:.3f} uJ "
                f"(prediction error {100 * e['prediction_error']:+.2f}%)")
        if e.get("search_predicted_j"):
            what = "the graph as read was estimated at" if imported else "the search predicted"
            line += (f"; {what} {1e6 * e['search_predicted_j']:.3f} uJ before training "
                     f"({100 * e['search_prediction_error']:+.1f}%)")
        print(line)


def plot(result, path: Path) -> None:
    """validation.png: spikes per sample per layer and backend (log axis, layers in network order, * fed only by
    feedback), the relative count error of each compared pair per layer, and the accuracies and energy."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..io_utils import write_bytes_atomic

    layers = [layer + ("*" if layer in result.feedback_only else "") for layer in result.layers]
    x = np.arange(len(layers))
    columns = [b for b in BACKEND_COLUMNS if b in result.spikes]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(9, len(layers) * 1.1), 8), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    width = 0.8 / max(len(columns), 1)
    for i, column in enumerate(columns):
        values = [max(result.spikes[column].get(layer, 0.0), 1e-3) for layer in result.layers]
        label = "hwnas in Norse's order" if column == "hwnas_norse_order" else column
        top.bar(x - 0.4 + (i + 0.5) * width, values, width, label=label, hatch="//" if column == "norse" else None)
    top.set_yscale("log")
    top.set_ylabel("spikes per sample (log)")
    top.legend(fontsize=8, ncol=4)
    accuracy = [f"{name} {100 * value:.2f}%" for name, value in result.accuracy.items()]
    lines = [", ".join(accuracy[i:i + 4]) for i in range(0, len(accuracy), 4)] or ["no labels"]
    fig.suptitle(f"{result.samples} test samples x {result.steps} steps (+{result.window - result.steps} pipeline "
                 "steps); accuracy:\n" + "\n".join(lines), fontsize=9)
    pairs = list(result.pairs.items())
    width = 0.8 / max(len(pairs), 1)
    for i, (key, pair) in enumerate(pairs):
        label = ("norse vs hwnas (Norse's order)" if key == "norse" else key.replace("/", " vs ")) + \
            (" (identical)" if pair.get("identical") else "")
        errors = [100 * pair["layers"][layer]["relative_error"] for layer in result.layers]
        bottom.bar(x - 0.4 + (i + 0.5) * width, errors, width, label=label)
    bottom.set_yscale("symlog", linthresh=0.1)
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel("count error vs reference, % (symlog)")
    bottom.legend(fontsize=8)
    bottom.set_xticks(x, layers, rotation=30, ha="right")
    if result.energy:
        e = result.energy
        bottom.set_xlabel(f"energy per inference on {e['target']}: predicted {1e6 * e['predicted_j']:.3f} uJ, measured "
                          f"in Lava fixed-point {1e6 * e['measured_lava_fixed_j']:.3f} uJ "
                          f"({100 * e['prediction_error']:+.2f}%)" + ("; * fed only by feedback" if result.feedback_only
                                                                      else ""), fontsize=9)
    elif result.feedback_only:
        bottom.set_xlabel("* fed only by feedback", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
