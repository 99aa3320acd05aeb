"""Hostile input, bounded memory, one writer per run folder, and results independent of the machine's threads.

Every bad input must end in one line on stderr starting ``error:`` and exit code 2 (or a correct result), never
a traceback; the fuzz tests below generate hostile NIR graphs, target files and options from a seed.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hwnas.cli import main
from hwnas.limits import available_memory_bytes
from hwnas.nas.runner import SearchConfig, run_search
from conftest import SMALL_SEARCH

ROOT = Path(__file__).resolve().parents[1]
SMALL = SMALL_SEARCH


def outcome(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``hwnas argv`` run in this process; any exception but SystemExit fails the test."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def _nodes_of(group: h5py.Group, kind: str) -> list[str]:
    return sorted(n for n in group["nodes"] if group["nodes"][n]["type"][()].decode() == kind)


def _replace(group: h5py.Group, path: str, value) -> None:
    del group[path]
    group[path] = value


def mutated(source: Path, target: Path, mutate) -> Path:
    shutil.copy(source, target)
    with h5py.File(target, "r+") as handle:
        mutate(handle["node"])
    return target


# --- the audit's cases, each with the message a user needs -------------------------------------------------------

def test_hostile_nir_values_are_named(trained_run, tmp_path, capsys):
    model = trained_run / "model.nir"

    def zero_tau(group):
        node = _nodes_of(group, "LIF")[0]
        _replace(group, f"nodes/{node}/tau", np.zeros_like(group[f"nodes/{node}/tau"][()]))

    def nan_weight(group):
        node = _nodes_of(group, "Conv2d")[0]
        weight = group[f"nodes/{node}/weight"][()]
        weight.reshape(-1)[3] = np.nan
        _replace(group, f"nodes/{node}/weight", weight)

    def text_dt(group):
        _replace(group, "metadata/hwnas.dt_s", "one millisecond")

    def renamed(group):
        _replace(group, f"nodes/{_nodes_of(group, 'LIF')[0]}/type", "LeakyIntegrator")

    cases = [(zero_tau, "tau must be a positive time constant, got 0"),
             (nan_weight, "weight holds nan (every value must be finite)"),
             (text_dt, "metadata hwnas.dt_s must be a positive number of seconds, got 'one millisecond'"),
             (renamed, "has type 'LeakyIntegrator', which is no NIR node type")]
    for number, (mutate, message) in enumerate(cases):
        path = mutated(model, tmp_path / f"g{number}.nir", mutate)
        for argv in (["estimate", str(path), "--samples", "2"],
                     ["deploy", str(path), "--samples", "2", "--backend", "norse"]):
            assert_refused(*outcome(argv, capsys), message)


def test_a_huge_declared_array_is_refused_before_it_is_read(trained_run, tmp_path, capsys):
    """A small file declaring a 400,000 x 400,000 Linear (640 GB): HDF5's headers say how large it is; nothing is
    read. (The audit's case was 40,000 x 40,000; ten times more on each side keeps this test true on any machine
    with less than 2.5 TB of memory.)"""
    def huge(group):
        node = _nodes_of(group, "Linear")[0]
        del group[f"nodes/{node}/weight"]
        group[f"nodes/{node}"].create_dataset("weight", shape=(400000, 400000), dtype="f4", chunks=(1000, 1000),
                                              compression="gzip", fillvalue=0.0)

    path = mutated(trained_run / "model.nir", tmp_path / "huge.nir", huge)
    assert path.stat().st_size < 1_000_000
    assert available_memory_bytes() < 4 * 400000 * 400000 * 4
    for argv in (["estimate", str(path), "--samples", "2"], ["deploy", str(path), "--samples", "2"]):
        assert_refused(*outcome(argv, capsys), "(arrays of 596 GiB; the largest", "has shape [400000, 400000]",
                       "this graph is larger than this machine can simulate")


@pytest.mark.parametrize("argv,message", [
    (["search", *SMALL, "--width", "1000000"], "scoring at width 1000000"),
    (["search", *SMALL, "--width", "1000000", "--target", "software"], "scoring at width 1000000"),
    (["search", *SMALL, "--timesteps", "1000000"], "with --timesteps 1000000"),
    (["search", *SMALL, "--widths", "4,1000000"], "scoring at width 4/1000000"),
], ids=["width", "width-software", "timesteps", "widths"])
def test_requests_beyond_memory_are_refused_before_allocation(argv, message, tmp_path, capsys):
    code, err = outcome([*argv, "--out", str(tmp_path / "run")], capsys)
    assert_refused(code, err, message, "of memory, this machine has", "available: lower")
    assert not (tmp_path / "run").exists()


def test_deploy_steps_beyond_memory(trained_run, capsys):
    assert_refused(*outcome(["deploy", str(trained_run / "model.nir"), "--samples", "2", "--steps", "100000000"],
                            capsys), "deploy: 2 samples x 100000000 steps", "lower --samples or --steps")


def test_outputs_are_checked_before_any_work(trained_run, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    model = str(trained_run / "model.nir")
    cases = [
        (["search", *SMALL, "--out", str(a_file)], "is a file, not a folder"),
        (["search", *SMALL, "--out", str(a_file / "run")], "is a file, not a folder"),
        (["export", str(trained_run), "--out", str(a_file / "m.nir")], "is a file, not a folder"),
        (["deploy", model, "--samples", "2", "--save", str(tmp_path / "out.txt")], "must end in .npz or .json"),
        (["deploy", model, "--samples", "2", "--save", str(a_file / "out.npz")], "is a file, not a folder"),
        (["estimate", str(trained_run), "--samples", "2", "--json", str(tmp_path)], "is a folder, not a file"),
    ]
    for argv, message in cases:
        started = time.perf_counter()
        assert_refused(*outcome(argv, capsys), message)
        assert time.perf_counter() - started < 5, argv  # refused before the work, not after it
    assert a_file.read_text() == "x"


def test_hostile_run_folders_and_options(trained_run, tmp_path, capsys):
    binary = tmp_path / "binary"
    shutil.copytree(trained_run, binary)
    (binary / "architecture.json").write_bytes(bytes(range(256)))
    nan_input = tmp_path / "nan.npy"
    np.save(nan_input, np.full((4, 2, 1, 8, 8), np.nan))
    for argv, message in [
        (["train", str(binary), "--epochs", "1"], "is not a text (JSON) file"),
        (["search", "--seed", "-1"], "--seed: must be a non-negative integer"),
        (["search", "--seed", str(2 ** 64)], "must be at most 4294967295"),
        (["deploy", str(trained_run / "model.nir"), "--input", str(nan_input)], "holds NaN or infinite values"),
        (["search", *SMALL, "--dv", "0", "--out", str(tmp_path / "dv")], "--dv 0 (no decay) has no finite NIR"),
        (["search", *SMALL, "--target", str(tmp_path), "--out", str(tmp_path / "t")], "is a folder: give a built-in"),
    ]:
        assert_refused(*outcome(argv, capsys), message)


def test_a_target_with_infinite_energy_is_refused(tmp_path, capsys):
    text = (ROOT / "hwnas" / "hw_models" / "targets" / "loihi2.toml").read_text()
    for value in ("inf", "nan", "1e400"):
        path = tmp_path / f"{value}.toml"
        path.write_text(text.replace("synop_j = 23.6e-12", f"synop_j = {value}"))
        assert_refused(*outcome(["search", *SMALL, "--target", str(path), "--out", str(tmp_path / value)], capsys),
                       "field 'energy.synop_j' must be a finite non-negative number")


def test_a_graph_without_weights_runs_in_every_backend(tmp_path, capsys):
    import nir

    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
               "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
               "th": nir.Threshold(threshold=np.full((1, 4, 4), 0.5, dtype=np.float32)),
               "readout": nir.Output(output_type={"output": np.array([1, 4, 4])})},
        edges=[("input", "pool"), ("pool", "th"), ("th", "readout")], metadata={"hwnas.dt_s": 0.001})
    nir.write(tmp_path / "pool.nir", graph)
    for backend in ("norse", "lava") if importlib.util.find_spec("lava") else ("norse",):
        saved = tmp_path / f"{backend}.json"
        code, err = outcome(["deploy", str(tmp_path / "pool.nir"), "--backend", backend, "--samples", "3",
                             "--steps", "4", "--save", str(saved)], capsys)
        assert code == 0, err
        layer = json.loads(saved.read_text())["layers"]["th"]
        assert layer["identical_share"] == 1.0 and layer["hwnas_spikes"] > 0


# --- a search that fails after scoring leaves a folder that resumes -----------------------------------------------

def test_a_search_whose_files_are_lost_after_scoring_resumes_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", *SMALL, "--out", str(out)]) == 0
    first = json.loads((out / "report.json").read_text())["winner"]
    for name in ("architecture.json", "report.json", "search.csv"):
        (out / name).unlink()
    assert main(["search", "--resume", str(out), "--quiet"]) == 0
    assert json.loads((out / "report.json").read_text())["winner"]["cell"] == first["cell"]
    assert (out / "architecture.json").is_file() and (out / "search.csv").is_file()


# --- one writer per run folder -------------------------------------------------------------------------------------

HOLD = ("import sys, time; from hwnas.run_folder import RunFolder\n"
        "with RunFolder(sys.argv[1]).writing('holder'):\n"
        "    print('held', flush=True); time.sleep(60)\n")


def test_a_second_writer_is_refused_while_the_folder_is_held(trained_run, tmp_path, capsys):
    folder = tmp_path / "held"
    shutil.copytree(trained_run, folder)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        for argv in (["train", str(folder), "--epochs", "1", "--quiet"], ["export", str(folder)],
                     ["search", "--resume", str(folder), "--quiet"]):
            assert_refused(*outcome(argv, capsys), f"{folder} is being written by hwnas holder (pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert main(["export", str(folder)]) == 0  # the lock went with its process


def test_two_searches_into_one_folder_at_once(tmp_path):
    out = tmp_path / "shared"
    command = [sys.executable, "-m", "hwnas", "search", *SMALL, "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    winner_out = next(out_text for code, out_text, _ in results if code == 0)
    loser_err = next(err for code, _, err in results if code == 2)
    assert loser_err.count("\n") == 1 and loser_err.startswith("error: ") and (
        "is being written by hwnas search" in loser_err or "already holds a search" in loser_err), loser_err
    winner = json.loads((out / "report.json").read_text())["winner"]["cell"]
    assert f"winner: {winner}" in winner_out


# --- same seed, same result, whatever the machine's thread count ---------------------------------------------------

def _rows_without_timings(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(path.open())]


def test_the_search_result_does_not_depend_on_the_machines_threads(tmp_path):
    """Refinement trains candidates; training with 1 and 2 threads gives different models (a float sum split over
    threads adds in another order), so the run computes with its own recorded thread count."""
    config = SearchConfig(strategy="random", candidates=4, timesteps=4, width=8, batch_size=16, repeats=1, refine=2,
                          screen=0)  # the screening trains like the rungs: one training path is enough here
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            run_search(config, tmp_path / f"threads{threads}")
            assert torch.get_num_threads() == threads  # restored
    finally:
        torch.set_num_threads(previous)
    assert _rows_without_timings(tmp_path / "threads1" / "search.csv") == \
        _rows_without_timings(tmp_path / "threads2" / "search.csv")
    assert json.loads((tmp_path / "threads1" / "report.json").read_text())["config"]["threads"] == 1


# --- fuzz: generated hostile graphs, target files and options ------------------------------------------------------

def _hostile_value(rng: np.random.Generator, like: np.ndarray):
    choice = rng.integers(7)
    if choice == 0:
        return np.full_like(like, np.nan, dtype=np.float32)
    if choice == 1:
        return np.full_like(like, -np.inf, dtype=np.float32)
    if choice == 2:
        return np.zeros_like(like)
    if choice == 3:
        return -np.abs(like) - 1
    if choice == 4:
        return np.zeros((3,) * max(1, like.ndim + int(rng.integers(-1, 2))), dtype=np.float32)  # wrong shape
    if choice == 5:
        return "text"
    return np.asarray(like, dtype=np.float64) * 1e30


def _fuzz_graph(group: h5py.Group, rng: np.random.Generator) -> None:
    names = sorted(group["nodes"])
    for _ in range(int(rng.integers(1, 3))):
        node = names[int(rng.integers(len(names)))]
        fields = sorted(k for k in group["nodes"][node] if k != "type")
        action = rng.integers(5)
        if action == 0 and fields:  # a hostile value in a field
            field = fields[int(rng.integers(len(fields)))]
            _replace(group["nodes"][node], field, _hostile_value(rng, np.asarray(group["nodes"][node][field][()])))
        elif action == 1:  # a node removed, its edges dangling
            del group["nodes"][node]
        elif action == 2:  # an edge to a random node
            edges = [tuple(e) for e in group["edges"][()]]
            edges.append((node.encode(), names[int(rng.integers(len(names)))].encode()))
            _replace(group, "edges", np.array(edges, dtype="S"))
        elif action == 3 and fields:  # a field removed
            del group["nodes"][node][fields[int(rng.integers(len(fields)))]]
        else:  # hostile metadata
            key = ["hwnas.dt_s", "hwnas.timing", "hwnas.backward", "hwnas.architecture"][int(rng.integers(4))]
            _replace(group, f"metadata/{key}", ["-1", "{[", "0", "nan", "pipelined?"][int(rng.integers(5))])


def test_fuzz_hostile_nir_graphs(trained_run, tmp_path, capsys):
    rng = np.random.default_rng(18)
    for case in range(30):
        path = mutated(trained_run / "model.nir", tmp_path / f"fuzz{case}.nir", lambda g: _fuzz_graph(g, rng))
        code, err = outcome(["estimate", str(path), "--samples", "2", "--target", "loihi2"], capsys)
        assert code in (0, 1, 2) and "Traceback" not in err, (case, code, err)
        if code == 2:
            assert_refused(code, err)


def test_fuzz_hostile_target_files(trained_run, tmp_path, capsys):
    text = (ROOT / "hwnas" / "hw_models" / "targets" / "loihi2.toml").read_text()
    lines = [line for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#")]
    rng = np.random.default_rng(18)
    values = ["-1", "0", "nan", "inf", '"many"', "true", "[1, 2]", "1e400", "99999999999999999999", "0.5", "{}"]
    for case in range(25):
        hostile = text
        for _ in range(int(rng.integers(1, 3))):
            line = lines[int(rng.integers(len(lines)))]
            key = line.split("=", 1)[0]
            replacement = "" if rng.random() < 0.15 else f"{key}= {values[int(rng.integers(len(values)))]}"
            hostile = hostile.replace(line, replacement, 1)
        path = tmp_path / f"fuzz{case}.toml"
        path.write_text(hostile)
        code, err = outcome(["estimate", str(trained_run), "--samples", "2", "--target", str(path)], capsys)
        assert code in (0, 1, 2) and "Traceback" not in err, (case, code, err, hostile)
        if code == 2:
            assert_refused(code, err)


def test_fuzz_hostile_options(trained_run, tmp_path, capsys):
    rng = np.random.default_rng(18)
    values = ["-1", "0", "nan", "inf", "-inf", "1e999", str(2 ** 70), "abc", "", "1,,2", "0.0", "-0"]
    commands = {
        "search": ["--timesteps", "--width", "--widths", "--stages", "--head-pool", "--batch-size", "--repeats",
                   "--candidates", "--du", "--dv", "--theta", "--energy-weight", "--max-cores", "--max-energy",
                   "--refine", "--refine-epochs", "--seed", "--threads", "--spike-lambda", "--population",
                   "--max-samples"],
        "train": ["--epochs", "--qat-epochs", "--lr", "--batch-size", "--seed", "--threads"],
        "estimate": ["--samples", "--steps", "--seed"],
        "deploy": ["--samples", "--steps", "--dt", "--seed"],
    }
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    for case in range(40):
        command = sorted(commands)[int(rng.integers(len(commands)))]
        option = commands[command][int(rng.integers(len(commands[command])))]
        value = values[int(rng.integers(len(values)))]
        argv = {"search": ["search", *SMALL, "--out", str(tmp_path / f"s{case}")],
                "train": ["train", str(copy), "--epochs", "1", "--qat-epochs", "0", "--quiet"],
                "estimate": ["estimate", str(trained_run), "--samples", "2"],
                "deploy": ["deploy", str(trained_run / "model.nir"), "--samples", "2", "--backend", "norse"],
                }[command] + [f"{option}={value}"]  # the hostile value last: it overrides the defaults above
        code, err = outcome(argv, capsys)
        # every value above is out of range for every option (0 only where 0 is allowed, which then must work)
        assert code in (0, 2) and "Traceback" not in err, (argv, code, err)
        if code == 2:
            assert_refused(code, err)


def test_a_run_searched_on_data_in_memory_refuses_to_train_on_other_data(tmp_path, capsys):
    """run_search(splits=...) records the data's summary; `hwnas train` would load the configured dataset instead
    (digits here) and must say so rather than train on it (issue 17's finding: a traceback, or silently wrong)."""
    from hwnas.data import load_dataset
    from hwnas.data.splits import DatasetSplits

    digits = load_dataset("digits", None, 4, 0)
    keep = lambda x, y: (x[y < 5], y[y < 5])  # noqa: E731  five classes of my own
    parts = [keep(*digits.split(name)) for name in ("train", "val", "test")]
    mine = DatasetSplits("five-digits", "static", *parts[0], *parts[1], *parts[2], num_classes=5)
    out = tmp_path / "run"
    run_search(SearchConfig(strategy="random", candidates=2, timesteps=4, width=4, batch_size=16, repeats=1,
                            refine=0), out, splits=mine)
    assert json.loads((out / "report.json").read_text())["dataset"]["name"] == "five-digits"
    assert_refused(*outcome(["train", str(out), "--epochs", "1", "--quiet"], capsys),
                   "was searched on other data than this step loads (name five-digits vs digits, num_classes 5 vs 10")
    assert not (out / "model.pt").exists()


def test_training_memory_estimate_counts_the_pipeline_and_loihi_arithmetic():
    """A training step holds every simulated step (input steps plus the pipeline's latency), and QAT in Loihi's
    arithmetic about three times float's (measured: 33-38 against 100-121 bytes per neuron, step and sample)."""
    from conftest import small_arch
    from hwnas.arch.footprint import network_size, run_bytes

    pipelined, zero_delay = small_arch(timing="pipelined"), small_arch(timing="zero-delay")
    parameters, neurons, latency = network_size(pipelined)
    assert latency > 0 and network_size(zero_delay)[2] == 0
    steps = pipelined.timesteps + latency
    float_step = run_bytes(parameters, neurons, 64, steps, 32, True)
    qat_step = run_bytes(parameters, neurons, 64, steps, 32, True, "loihi")
    assert 2.5 < qat_step / float_step < 3.0
    assert float_step >= 32 * 33 * neurons * steps  # at least what float training was measured to hold
    assert qat_step >= 32 * 100 * neurons * steps


def test_a_wrong_dt_is_named_and_silent_outputs_score_nothing(trained_run, capsys):
    """A graph run with a time step that integrates nothing: every hidden layer is named beside the table, and
    outputs that never receive current are wrong (a tie), not the first class; the samples are class-balanced."""
    code = main(["deploy", str(trained_run / "model.nir"), "--backend", "norse", "--samples", "10", "--dt", "1e-9"])
    out = capsys.readouterr().out
    assert code == 0
    assert "test samples: 10 of 270, class-balanced, drawn with seed 0 (--seed)" in out
    assert "layer stem: no spikes in 10 samples; is --dt right?" in out
    assert "accuracy: hwnas 0.00%, norse 0.00%" in out
    code = main(["deploy", str(trained_run / "model.nir"), "--backend", "norse", "--samples", "10"])
    assert code == 0 and "is --dt right?" not in capsys.readouterr().out
    main(["estimate", str(trained_run / "model.nir"), "--samples", "4", "--dt", "1e-9"])
    assert "layer stem: no spikes in 4 samples; is --dt right?" in capsys.readouterr().out


def test_a_path_of_the_wrong_kind_is_refused_by_each_step_in_one_line(trained_run, tmp_path, capsys):
    """Each command names what it expected when given a file where a run folder belongs, a missing graph, or an
    input array of the wrong shape (the command line and the API share these paths)."""
    np.save(tmp_path / "flat.npy", np.zeros((4, 2, 64), np.float32))
    for argv, fragment in (
            (["train", str(trained_run / "model.nir")], "architecture.json"),
            (["train", str(tmp_path / "new"), "--from", str(tmp_path / "nope")], "no NIR file at"),
            (["train", str(tmp_path / "new"), "--from", str(tmp_path), "--timesteps", "8"], str(tmp_path)),
            (["validate", str(trained_run / "model.nir"), "--skip", "lava_fixed,lava_float,norse"], "no model.nir in"),
            (["deploy", str(trained_run / "model.nir"), "--backend", "norse", "--input", str(tmp_path / "flat.npy")],
             "inputs have shape [64] per step")):
        assert_refused(*outcome(argv, capsys), fragment)
    assert not (tmp_path / "new").exists()


def test_run_folders_keep_their_file_formats(trained_run):
    """The formats written into run folders are what earlier versions wrote, so their folders still resume and
    load."""
    assert json.loads((trained_run / "checkpoint.json").read_text())["format"] == "hwnas.search-checkpoint"
    checkpoint = torch.load(trained_run / "model.pt", weights_only=True)
    assert checkpoint["format"] == "hwnas.model" and checkpoint["version"] == 1
    assert list(json.loads((trained_run / "train.json").read_text()))[:4] == ["target", "timing", "dataset", "device"]
