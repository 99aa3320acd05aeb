"""Hostile inputs: every command fed what a careless or hostile user would give it, each in its own process.

Builds a small trained run folder (search, train, export), derives broken NIR graphs, target files, run folders
and options from it, runs each case as ``python -m hwnas ...`` under a limit of private memory (RLIMIT_DATA, so
that unbounded memory shows as a failure, not as a swapping machine; Lava's shared memory is not counted) and a
time limit, and prints one line per case:

    refused    exit 2 with one line on stderr starting ``error:`` (what hwnas promises for bad input)
    ok         exit 0 (listed so that a case accepted though wrong shows up)
    TRACEBACK  a Python traceback (a bug)
    MEMORY     the memory limit was hit
    TIMEOUT    the time limit was hit

and, at the end, the counts. Exit code 1 when any case is TRACEBACK, MEMORY or TIMEOUT, or a case marked
``expect="refused"`` was accepted.

    .venv/bin/python bench/hostile_inputs.py [--only SUBSTRING] [--memory-gb 4] [--timeout 120]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# a folder nobody can create, not even root (chmod does not stop root)
NOT_WRITABLE = "/proc/hwnas-not-writable"
SMALL_SEARCH = ["--strategy", "random", "--candidates", "2", "--timesteps", "4", "--width", "4",
                "--batch-size", "16", "--repeats", "1", "--refine", "0", "--quiet"]


@dataclass
class Case:
    """One hostile input: how to prepare it (in the work folder) and the command line to run."""

    name: str
    argv: list[str]
    prepare: Callable[[Path], None] | None = None
    expect: str = "refused"  # or "ok", or "either" (a correct result is fine too)
    env: dict = field(default_factory=dict)


def _mutated_nir(name: str, mutate: Callable[[h5py.Group], None]) -> Callable[[Path], None]:
    def prepare(work: Path) -> None:
        shutil.copy(work / "base" / "model.nir", work / name)
        with h5py.File(work / name, "r+") as handle:
            mutate(handle["node"])
    return prepare


def _nodes_of(group: h5py.Group, kind: str) -> list[str]:
    return [n for n in group["nodes"] if group["nodes"][n]["type"][()].decode() == kind]


def _set(group: h5py.Group, path: str, value) -> None:
    del group[path]
    group[path] = value


def _zero_tau(group):
    node = _nodes_of(group, "LIF")[0]
    _set(group, f"nodes/{node}/tau", np.zeros_like(group[f"nodes/{node}/tau"][()]))


def _text_dt(group):
    _set(group, "metadata/hwnas.dt_s", "one millisecond")


def _weights(value):
    def mutate(group):
        node = _nodes_of(group, "Conv2d")[0]
        weight = group[f"nodes/{node}/weight"][()]
        weight.reshape(-1)[0] = value
        _set(group, f"nodes/{node}/weight", weight)
    return mutate


def _renamed_type(group):
    node = _nodes_of(group, "LIF")[0]
    _set(group, f"nodes/{node}/type", "LeakyIntegrator")


def _huge_linear(group):
    node = _nodes_of(group, "Linear")[0]
    del group[f"nodes/{node}/weight"]
    group[f"nodes/{node}"].create_dataset("weight", shape=(40000, 40000), dtype="f4", chunks=(1000, 1000),
                                          compression="gzip", fillvalue=0.0)


def _edges(transform):
    def mutate(group):
        edges = [tuple(e.decode() if isinstance(e, bytes) else e for e in row) for row in group["edges"][()]]
        _set(group, "edges", np.array(transform(edges, group), dtype="S"))
    return mutate


def _self_loop(edges, group):
    node = _nodes_of(group, "LIF")[0]
    return edges + [(node, node)]


def _drop_node(kind):
    def mutate(group):
        for node in _nodes_of(group, kind):
            del group[f"nodes/{node}"]
        names = set(group["nodes"])
        edges = [tuple(e.decode() for e in row) for row in group["edges"][()]]
        _set(group, "edges", np.array([e for e in edges if e[0] in names and e[1] in names], dtype="S"))
    return mutate


def _unconnected_input(edges, group):
    return [e for e in edges if e[0] != "input"]


def _weightless_graph(work: Path) -> None:
    import nir

    nodes = {"input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
             "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
             "th": nir.Threshold(threshold=np.full((1, 4, 4), 0.5, dtype=np.float32)),
             "readout": nir.Output(output_type={"output": np.array([1, 4, 4])})}
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "pool"), ("pool", "th"), ("th", "readout")],
                         metadata={"hwnas.dt_s": 0.001})
    nir.write(work / "weightless.nir", graph)


def _write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def prepare(work: Path) -> None:
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return prepare


def _run_copy(name: str, file: str, data: bytes | str) -> Callable[[Path], None]:
    def prepare(work: Path) -> None:
        shutil.copytree(work / "base", work / name)
        (work / name / file).write_bytes(data if isinstance(data, bytes) else data.encode())
    return prepare


def _target(name: str, replace: tuple[str, str]) -> Callable[[Path], None]:
    def prepare(work: Path) -> None:
        text = (ROOT / "hwnas" / "hw_models" / "targets" / "loihi2.toml").read_text()
        assert replace[0] in text, replace
        (work / name).write_text(text.replace(*replace))
    return prepare


def _array(name: str, make: Callable[[], np.ndarray]) -> Callable[[Path], None]:
    return lambda work: np.save(work / name, make())


def cases() -> list[Case]:
    """Every hostile case (the audit of issue 18 and more)."""
    nan_input = lambda: np.where(np.eye(8)[None, None, None] > 0, np.nan, 0.0) * np.ones((4, 2, 1, 8, 8))  # noqa: E731
    deploy = ["deploy", "--samples", "2"]
    return [
        # NIR graphs
        Case("nir: zero tau in a LIF node", [*deploy, "zero_tau.nir"], _mutated_nir("zero_tau.nir", _zero_tau)),
        Case("nir: zero tau (estimate)", ["estimate", "zero_tau.nir", "--samples", "2"],
             _mutated_nir("zero_tau.nir", _zero_tau)),
        Case("nir: non-numeric hwnas.dt_s", [*deploy, "text_dt.nir"], _mutated_nir("text_dt.nir", _text_dt)),
        Case("nir: NaN weight (lava)", [*deploy, "nan.nir"], _mutated_nir("nan.nir", _weights(np.nan))),
        Case("nir: inf weight (lava)", [*deploy, "inf.nir"], _mutated_nir("inf.nir", _weights(np.inf))),
        Case("nir: NaN weight (norse)", [*deploy, "nan.nir", "--backend", "norse"],
             _mutated_nir("nan.nir", _weights(np.nan))),
        Case("nir: NaN weight (estimate)", ["estimate", "nan.nir", "--samples", "2"],
             _mutated_nir("nan.nir", _weights(np.nan))),
        Case("nir: renamed node type", [*deploy, "renamed.nir"], _mutated_nir("renamed.nir", _renamed_type)),
        Case("nir: 40000x40000 Linear (deploy)", [*deploy, "huge.nir"], _mutated_nir("huge.nir", _huge_linear)),
        Case("nir: 40000x40000 Linear (estimate)", ["estimate", "huge.nir", "--samples", "2"],
             _mutated_nir("huge.nir", _huge_linear)),
        Case("nir: LIF self-loop", [*deploy, "loop.nir"], _mutated_nir("loop.nir", _edges(_self_loop))),
        # nir.read completes a graph without Input or Output nodes (one for each dangling end): a valid graph
        Case("nir: no Output node", [*deploy, "no_output.nir"], _mutated_nir("no_output.nir", _drop_node("Output")),
             expect="either"),
        Case("nir: no Input node", [*deploy, "no_input.nir"], _mutated_nir("no_input.nir", _drop_node("Input")),
             expect="either"),
        Case("nir: input feeds nothing", [*deploy, "unconnected.nir"],
             _mutated_nir("unconnected.nir", _edges(_unconnected_input))),
        Case("nir: no weights at all (norse)", [*deploy, "weightless.nir", "--backend", "norse", "--steps", "4"],
             _weightless_graph, expect="either"),
        Case("nir: no weights at all (lava)", [*deploy, "weightless.nir", "--steps", "4"], _weightless_graph,
             expect="either"),
        Case("nir: not HDF5", [*deploy, "text.nir"], _write("text.nir", "hello")),
        # numbers from options and arrays
        Case("search --seed -1", ["search", "--seed", "-1", *SMALL_SEARCH, "--out", "s1"]),
        Case("search --seed 2**64", ["search", "--seed", str(2 ** 64), *SMALL_SEARCH, "--out", "s2"]),
        Case("train --seed -1", ["train", "base", "--seed", "-1", "--epochs", "1"]),
        Case("deploy --seed 2**64", [*deploy, "base/model.nir", "--seed", str(2 ** 64)]),
        Case("search --width 1000000", ["search", *SMALL_SEARCH, "--width", "1000000", "--out", "w"]),
        Case("search --width 1000000 (software)", ["search", *SMALL_SEARCH, "--width", "1000000", "--target",
                                                   "software", "--out", "ws"]),
        Case("search --timesteps 1000000", ["search", *SMALL_SEARCH, "--timesteps", "1000000", "--out", "t"]),
        Case("deploy --steps 1000000", [*deploy, "base/model.nir", "--steps", "1000000"]),
        Case("search --batch-size 10000000", ["search", *SMALL_SEARCH, "--batch-size", "10000000", "--out", "b"]),
        Case("search --du nan", ["search", *SMALL_SEARCH, "--du", "nan", "--out", "du"]),
        Case("search --theta -1", ["search", *SMALL_SEARCH, "--theta", "-1", "--out", "th"]),
        Case("search --dv 0", ["search", *SMALL_SEARCH, "--dv", "0", "--out", "dv"]),
        Case("deploy --input with NaN", [*deploy, "base/model.nir", "--input", "nan.npy"],
             _array("nan.npy", nan_input)),
        Case("deploy --input of wrong shape", [*deploy, "base/model.nir", "--input", "bad.npy"],
             _array("bad.npy", lambda: np.zeros((4, 2, 3)))),
        Case("deploy --input of strings", [*deploy, "base/model.nir", "--input", "str.npy"],
             _array("str.npy", lambda: np.array(["a", "b"]))),
        # outputs
        Case("search --out is a file", ["search", *SMALL_SEARCH, "--out", "a_file"], _write("a_file", "x")),
        Case("search --out under a file", ["search", *SMALL_SEARCH, "--out", "a_file/run"], _write("a_file", "x")),
        Case("search --out not writable", ["search", *SMALL_SEARCH, "--out", f"{NOT_WRITABLE}/run"]),
        Case("export --out not writable", ["export", "base", "--out", f"{NOT_WRITABLE}/model.nir"]),
        Case("export --out under a file", ["export", "base", "--out", "a_file/model.nir"], _write("a_file", "x")),
        Case("deploy --save not writable", [*deploy, "base/model.nir", "--save", f"{NOT_WRITABLE}/out.npz"]),
        Case("deploy --save out.txt", [*deploy, "base/model.nir", "--save", "out.txt"]),
        Case("estimate --json not writable", ["estimate", "base", "--samples", "2", "--json", f"{NOT_WRITABLE}/e.json"]),
        # run folders and target files
        Case("train: binary architecture.json", ["train", "binarch", "--epochs", "1"],
             _run_copy("binarch", "architecture.json", bytes(range(256)))),
        Case("train: report.json holds a list", ["train", "listrep", "--epochs", "1"],
             _run_copy("listrep", "report.json", "[1, 2, 3]")),
        Case("train: architecture.json holds a list", ["train", "listarch", "--epochs", "1"],
             _run_copy("listarch", "architecture.json", "[]")),
        Case("search: target synop_j = inf", ["search", *SMALL_SEARCH, "--target", "inf.toml", "--out", "inf"],
             _target("inf.toml", ("synop_j = 23.6e-12", "synop_j = inf"))),
        Case("search: target synop_j = -1", ["search", *SMALL_SEARCH, "--target", "neg.toml", "--out", "neg"],
             _target("neg.toml", ("synop_j = 23.6e-12", "synop_j = -1.0"))),
        Case("search: target with 0 cores", ["search", *SMALL_SEARCH, "--target", "zero.toml", "--out", "zero"],
             _target("zero.toml", ("cores_per_chip = 128", "cores_per_chip = 0"))),
        Case("search: target is a folder", ["search", *SMALL_SEARCH, "--target", "base", "--out", "dir"]),
        Case("estimate: target synop_j = nan", ["estimate", "base", "--samples", "2", "--target", "nan.toml"],
             _target("nan.toml", ("synop_j = 23.6e-12", "synop_j = nan"))),
    ]


def classify(code: int, err: str, timed_out: bool) -> str:
    """The outcome of one case from its exit code and stderr."""
    if timed_out:
        return "TIMEOUT"
    if "MemoryError" in err or "Cannot allocate memory" in err or "std::bad_alloc" in err or code in (-9, 137):
        return "MEMORY"
    if "Traceback" in err:
        return "TRACEBACK"
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("wrote")]
    if code == 2 and len(lines) == 1 and lines[0].startswith("error:"):
        return "refused"
    if code == 0:
        return "ok"
    return f"exit {code}"


def _limit_memory(gigabytes: float) -> Callable[[], None]:
    def apply() -> None:
        limit = int(gigabytes * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    return apply


def run_case(case: Case, work: Path, memory_gb: float, timeout: float) -> tuple[str, str, float]:
    """Run one case in its own process; (outcome, last stderr line, seconds)."""
    if case.prepare:
        case.prepare(work)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **case.env}
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "hwnas", *case.argv], cwd=work, env=env, capture_output=True,
                              text=True, timeout=timeout, preexec_fn=_limit_memory(memory_gb))
        code, err, timed_out = done.returncode, done.stderr, False
    except subprocess.TimeoutExpired as exc:
        code, err, timed_out = -1, (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else (exc.stderr or ""), True
    seconds = time.perf_counter() - start
    lines = [line for line in err.splitlines() if line.strip()]
    return classify(code, err, timed_out), (lines[-1] if lines else ""), seconds


def build_base(work: Path) -> None:
    """A tiny trained run folder with model.nir: what the hostile cases start from."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv in (["search", *SMALL_SEARCH, "--out", "base"], ["train", "base", "--epochs", "1", "--qat-epochs", "1",
                                                              "--quiet"], ["export", "base"]):
        subprocess.run([sys.executable, "-m", "hwnas", *argv], cwd=work, env=env, check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=None, help="run only cases whose name contains this")
    parser.add_argument("--memory-gb", type=float, default=4.0, help="private memory limit per case (default 4)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case (default 120)")
    parser.add_argument("--json", default=None, help="also write the outcomes as JSON")
    args = parser.parse_args()
    selected = [c for c in cases() if args.only is None or args.only in c.name]
    with tempfile.TemporaryDirectory(prefix="hwnas-hostile-") as tmp:
        work = Path(tmp)
        print(f"building a small trained run folder in {work} ...", flush=True)
        build_base(work)
        outcomes, bad = [], 0
        for case in selected:
            outcome, line, seconds = run_case(case, work, args.memory_gb, args.timeout)
            wrong = outcome in ("TRACEBACK", "MEMORY", "TIMEOUT") or outcome.startswith("exit") or (
                case.expect == "refused" and outcome != "refused") or (case.expect == "ok" and outcome != "ok")
            bad += wrong
            print(f"{'!' if wrong else ' '} {outcome:9s} {seconds:5.1f} s  {case.name:38s} {line[:150]}", flush=True)
            outcomes.append(dict(case=case.name, argv=case.argv, outcome=outcome, seconds=round(seconds, 2),
                                 message=line, wrong=bool(wrong)))
    counts = {}
    for row in outcomes:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    print(f"{len(outcomes)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f"; wrong {bad}")
    if args.json:
        Path(args.json).write_text(json.dumps(outcomes, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
