"""A run folder as one HTML page (``hwnas report RUN``): what the search chose and why (or, for ``hwnas train
--from``, the graph it read and that graph on the target), what training reached,
NeuroBench's metrics, what the backends measured, with the plots embedded, so that the page is one file that can
be mailed or attached to a notebook. Reads only what the steps wrote; a step not run yet is a line saying which
command runs it. Needs neither torch nor matplotlib.

The Python API's verb for it is :func:`hwnas.api.report` (``hwnas.report(...)``)."""

from __future__ import annotations

import base64
import csv
import html
import math
import time
from pathlib import Path

from .errors import OptionError
from .io_utils import write_bytes_atomic
from .run_folder import RunFolder

MEASURED_ON = {"xylosim": "XyloSim", "hwnas_xylo": "Xylo-twin"}  # where a validation measured its spikes (else Lava)

REPORT_HTML = "report.html"
TOP_ROWS = 12  # candidates listed from search.csv, best first

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1180px; margin: 2em auto; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; font-family: monospace; }
img { max-width: 100%; border: 1px solid #eee; } .missing { color: #888; font-style: italic; }
.winner { background: #fff4d6; }
"""


def _number(value, digits: int = 4) -> str:
    """A figure as text: integers plainly, floats with ``digits`` significant digits, nothing as a dash."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


def _uj(joules) -> str:
    return "-" if joules in (None, "") else f"{float(joules) * 1e6:.3f} uJ"


def _percent(share) -> str:
    return "-" if share is None else f"{100 * float(share):.2f}%"


def _table(header: list[str], rows: list[list], text_columns: tuple[int, ...] = (0,),
           highlight: int | None = None) -> str:
    """An HTML table; cells are escaped, ``text_columns`` left-aligned, row ``highlight`` marked."""
    def cell(tag: str, column: int, value) -> str:
        kind = ' class="text"' if column in text_columns else ""
        return f"<{tag}{kind}>{html.escape(str(value))}</{tag}>"

    lines = ["<table>", "<tr>" + "".join(cell("th", i, h) for i, h in enumerate(header)) + "</tr>"]
    for index, row in enumerate(rows):
        mark = ' class="winner"' if index == highlight else ""
        lines.append(f"<tr{mark}>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _image(path: Path, alt: str) -> str:
    """A PNG embedded in the page (base64), or a line saying it is missing."""
    if not path.is_file():
        return f'<p class="missing">no {html.escape(path.name)}</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _missing(what: str, command: str) -> str:
    return f'<p class="missing">{html.escape(what)}: not run yet (<code>{html.escape(command)}</code>)</p>'


def _separation(separation: dict | None) -> str:
    """Whether the last rung told the winner from its runner-up."""
    if not separation:
        return "-"
    verdict = "ahead of" if separation["separated"] else "not separated from"
    # front.noise_figure words the same figures for the command line; this layer may not import hwnas.nas
    return (f"{verdict} the runner-up {separation['runner_up']['cell']}: {separation['margin']:.2f} points apart, "
            f"sampling noise {separation['noise']:.2f} points at 95 % on {separation['val_samples']:,} samples"
            + (f"; paired {separation['paired_noise']:.2f}" if "paired_noise" in separation else ""))


def _search_section(folder: RunFolder, report: dict) -> list[str]:
    winner = report.get("winner", {})
    signal = report.get("signal", {})
    estimate = report.get("estimate", {}).get("totals", {})
    refined = report.get("refined_estimate", {})
    rows = [
        ["winner", winner.get("cell", "-")],
        ["skeleton", winner.get("skeleton", "-")],
        ["target", report.get("target", {}).get("name", "-")],
        ["data", "{name} ({kind}, {shape}, {classes} classes)".format(
            name=report.get("dataset", {}).get("name", "-"), kind=report.get("dataset", {}).get("kind", "-"),
            shape="x".join(str(n) for n in report.get("dataset", {}).get("input_shape", [])),
            classes=report.get("dataset", {}).get("num_classes", "-"))],
        ["strategy", report.get("config", {}).get("strategy", "-")],
        ["preselected by", signal.get("preselected_by", signal.get("chosen_by", "-"))],
        ["chosen by", signal.get("chosen_by", "-")],
        ["last rung", _separation(signal.get("separation"))],
        ["evaluations", _number(report.get("evaluations"))],
        ["energy predicted (untrained)", _uj(estimate.get("energy_j"))],
        ["energy after refinement", _uj(refined.get("energy_j")) if refined else "-"],
        ["cores", _number(estimate.get("cores"))],
        ["time per inference", "-" if estimate.get("inference_time_s") is None
         else f"{estimate['inference_time_s'] * 1e6:.1f} us"],
        ["search time", "-" if report.get("search_seconds") is None else f"{report['search_seconds']:.0f} s"],
    ]
    parts = ["<h2>Search</h2>", _table(["", ""], rows, text_columns=(0, 1)),
             _image(folder.pareto, "score and refined accuracy versus energy and latency")]
    candidates = _top_candidates(folder)
    if candidates:
        header = ["rank", "preselect rank", "cell", "skeleton", "fitness", "energy (uJ)", "cores", "refined epochs",
                  "refined val. accuracy", "refined energy (uJ)"]
        table = [[r["rank"], r.get("preselect_rank", ""), r["cell"], r["skeleton"], _number(_float(r["fitness"])),
                  _number(_scaled(r["energy_j"])), r["cores"] or "-", r["refine_epochs"] or "-",
                  _percent(_float(r["refine_accuracy"])) if r["refine_accuracy"] else "-",
                  _number(_scaled(r["refine_energy_j"]))] for r in candidates]
        parts += [f"<p>The {len(table)} best candidates of <code>search.csv</code> (rank 1 is the winner):</p>",
                  _table(header, table, text_columns=(2, 3), highlight=0)]
    parts += _layer_table(report, "The winner per layer on the target (untrained activity, per inference):")
    return parts


def _imported_section(report: dict) -> list[str]:
    """What ``hwnas train --from`` read: the graph, the data, and the graph as read on the target."""
    imported, config = report["imported"], report.get("config", {})
    estimate = report.get("estimate", {}).get("totals", {})
    dataset = report.get("dataset", {})
    rows = [
        ["source", imported.get("source", "-")],
        ["SHA-256", imported.get("sha256", "-")],
        ["weights", "new (--from-scratch)" if config.get("from_scratch") else "the graph's, fine-tuned"],
        ["target", config.get("target", "-")],
        ["data", f"{dataset.get('name', '-')} ({dataset.get('kind', '-')}, "
                 f"{'x'.join(str(n) for n in dataset.get('input_shape', []))}, "
                 f"{dataset.get('num_classes', '-')} classes)"],
        ["validation accuracy as read", _percent(imported.get("val_accuracy_before"))],
        ["energy as read", _uj(estimate.get("energy_j"))],
        ["cores", _number(estimate.get("cores"))],
    ]
    parts = ["<h2>Imported network</h2>", _table(["", ""], rows, text_columns=(0, 1))]
    parts += _layer_table(report, "The graph as read per layer on the target (per inference):")
    return parts


def _layer_table(report: dict, caption: str) -> list[str]:
    """The per-layer estimate a report records (neurons, cores, spikes, synaptic operations, energy), if any."""
    layers = report.get("estimate", {}).get("layers", [])
    if not layers:
        return []
    header = ["layer", "neurons", "cores", "spikes", "synaptic ops", "energy (uJ)"]
    return [f"<p>{html.escape(caption)}</p>",
            _table(header, [[l["layer"], l["neurons"], l["cores"], _number(l["spikes"]), _number(l["synops"]),
                             _number(l["energy_j"] * 1e6)] for l in layers])]


def _float(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _scaled(text: str) -> float | None:
    value = _float(text)
    return None if value is None else value * 1e6


def _top_candidates(folder: RunFolder) -> list[dict]:
    """The best-ranked candidate rows of ``search.csv``."""
    if not folder.search_csv.is_file():
        return []
    with folder.search_csv.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("rank")]
    rows.sort(key=lambda row: int(row["rank"]))
    return rows[:TOP_ROWS]


def _train_section(folder: RunFolder) -> list[str]:
    trained = folder.read_json(folder.train_report)
    if trained is None:
        return ["<h2>Training</h2>", _missing("training", f"hwnas train {folder.path}")]
    bits = f"{trained['weight_bits']}-bit weights (QAT)" if trained.get("quantized") else "float weights"
    if trained.get("layer_weight_bits"):  # hwnas compress: each connection in its own bits
        bits = (f"compressed: {', '.join(map(str, sorted(set(trained['layer_weight_bits'].values()))))}-bit "
                "weights per connection (hwnas compress)")
    rows = [["test accuracy", _percent(trained.get("test_accuracy"))],
            ["validation accuracy", _percent(trained.get("val_accuracy"))],
            ["weights", bits],
            ["spikes per sample", _number(trained.get("spikes_per_sample", trained.get("spikes_per_inference")))],
            ["synaptic ops per sample", _number(trained.get("synops_per_sample", trained.get("synops_per_inference")))],
            ["training time", "-" if trained.get("seconds") is None else f"{trained['seconds']:.0f} s"]]
    parts = ["<h2>Training</h2>", _table(["", ""], rows, text_columns=(0, 1))]
    metrics = trained.get("neurobench")
    if metrics:
        ops = metrics["synaptic_operations"]
        parts += ["<p>NeuroBench's metrics of the trained network on the test split (per sample):</p>",
                  _table(["footprint (bytes)", "parameters", "connection sparsity", "activation sparsity",
                          "effective ACs", "effective MACs"],
                         [[_number(metrics["footprint"]), _number(metrics["parameter_count"]),
                           _number(metrics["connection_sparsity"]), _number(metrics["activation_sparsity"]),
                           _number(ops["effective_acs"]), _number(ops["effective_macs"])]], text_columns=())]
    return parts


def _validation_section(folder: RunFolder) -> list[str]:
    validation = folder.read_json(folder.validation)
    if validation is None:
        return ["<h2>Backends</h2>", _missing("validation", f"hwnas export {folder.path} && hwnas validate "
                                               f"{folder.path}")]
    accuracy = validation.get("accuracy", {})
    parts = ["<h2>Backends</h2>",
             f"<p>{validation.get('samples')} test samples x {validation.get('steps')} steps.</p>",
             _table(["backend", "accuracy"], [[name, _percent(value)] for name, value in accuracy.items()])]
    pairs = []
    for name, pair in validation.get("pairs", {}).items():
        rows = pair.get("layers", {})
        worst = max((abs(row.get("relative_error", 0.0)) for row in rows.values()), default=0.0)
        identical = min((row.get("identical_share", 1.0) for row in rows.values()), default=1.0)
        same = pair.get("identical", bool(rows) and all(row.get("identical") for row in rows.values()))
        pairs.append([name, "yes" if same else "no", _percent(worst), _percent(identical)])
    if pairs:
        parts.append(_table(["pair", "identical rasters", "worst layer count error", "least identical layer"],
                            pairs))
    energy = validation.get("energy", {})
    if energy:
        parts.append(_table(["", ""], [["energy predicted (trained)", _uj(energy.get("predicted_j"))],
                                       [f"energy of {MEASURED_ON.get(energy.get('measured_on'), 'Lava')}-measured "
                                        "spikes", _uj(energy.get("measured_j", energy.get("measured_lava_fixed_j")))],
                                       ["prediction error", _percent(energy.get("prediction_error"))]],
                            text_columns=(0, 1)))
    parts.append(_image(folder.validation_plot, "spikes per layer in every backend"))
    return parts


def render(folder: RunFolder) -> str:
    """The page of a run folder (see the module docstring)."""
    report = folder.search_report()
    if not report:
        raise OptionError(f"no search report in {folder.path} (report.json): hwnas report reads a run folder that "
                          "hwnas search, hwnas run or hwnas train --from wrote")
    title = f"hwnas run {folder.path.resolve().name}"
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>{html.escape(str(folder.path))}, page written {time.strftime('%Y-%m-%d %H:%M:%S')} by "
            f"hwnas {html.escape(str(report.get('hwnas', '')))}</p>"]
    body += _imported_section(report) if "imported" in report else _search_section(folder, report)
    body += _train_section(folder)
    body += _validation_section(folder)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the run folder's page (default ``RUN/report.html``) and return its path."""
    folder = RunFolder(run_dir)
    if not folder.path.is_dir():
        raise OptionError(f"no run folder at {folder.path}")
    path = Path(out) if out is not None else folder.path / REPORT_HTML
    page = render(folder).encode("utf-8")  # before taking the lock: a folder that is no run gets nothing
    with folder.writing("report"):
        write_bytes_atomic(path, page)
    return path
