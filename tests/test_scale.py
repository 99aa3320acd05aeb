"""Real benchmark shapes on Loihi 2: the pre-flight fits a skeleton the chip can hold (N-MNIST 34x34x2,
CIFAR-10 3x32x32, DVS Gesture 2x32x32), a search on N-MNIST-format files returns a feasible winner, an
impossible request stops within seconds naming the rule, and no network carries a population that cannot
reach the output."""

import json
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST_SEARCH

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from scale import write_nmnist  # noqa: E402  (the benchmark's emulated event camera)

from hwnas.arch.builder import build_network
from hwnas.arch.genotype import Architecture
from hwnas.errors import SearchError
from hwnas.hw_models import load_target
from hwnas.hw_models.mapping import map_network
from hwnas.nas.preflight import HEAVIEST_CELL, LIGHTEST_CELL, choose_skeletons
from hwnas.nas.runner import SearchConfig, run_search
from hwnas.sim.graph import INPUT


def reaching_output(net):
    """Populations with a path of connections to the output population."""
    reached, frontier = {net.output}, [net.output]
    while frontier:
        node = frontier.pop()
        for conn in net.active_connections():
            if conn.dst == node and conn.src not in reached and conn.src != INPUT:
                reached.add(conn.src)
                frontier.append(conn.src)
    return reached


@pytest.mark.parametrize("shape,classes", [((2, 34, 34), 10), ((3, 32, 32), 10), ((2, 32, 32), 11)])
def test_preflight_fits_a_skeleton_to_loihi2_at_benchmark_shapes(shape, classes):
    target = load_target("loihi2")
    base = Architecture(cell=LIGHTEST_CELL, input_shape=shape, num_classes=classes, width=32, timesteps=8)
    (template,), report = choose_skeletons(base, target, None, None, None)
    # the old fixed skeleton (2 stages, flatten into the classifier) breaks the classifier's fan-in
    assert report["rejected"][0]["skeleton"] == {"width": 32, "stages": 2, "head_pool": 1}
    assert report["verdict"] == "every cell fits"
    assert report["rejected"][0]["rule"] == "fanin"
    mapping = map_network(build_network(template.with_cell(HEAVIEST_CELL)), target)
    assert mapping.feasible and len(mapping.cores) <= 128


def test_impossible_request_fails_within_seconds_naming_the_rule():
    target = load_target("loihi2")
    base = Architecture(cell=LIGHTEST_CELL, input_shape=(2, 34, 34), num_classes=10, width=32, timesteps=8)
    started = time.perf_counter()
    with pytest.raises(SearchError, match=r"no skeleton fits loihi2 .* breaks max-cores: .* the budget is 1; "
                                          r"raise --max-cores"):
        choose_skeletons(base, target, None, None, None, max_cores=1)
    assert time.perf_counter() - started < 10
    with pytest.raises(SearchError, match=r"breaks fanin: layer output needs 9248 input axons .* allows 4096"):
        choose_skeletons(base, target, 32, 2, 1)


def test_nmnist_search_returns_a_feasible_winner_without_dead_populations(tmp_path):
    """On N-MNIST files of digits seen in three saccades (bench/scale.py's emulated event camera), read by the real
    loader: the pre-flight's skeleton, the screening rung's choice, a feasible winner."""
    write_nmnist(tmp_path, 60, seed=0)
    config = SearchConfig(dataset="nmnist", data_dir=str(tmp_path), strategy="random", candidates=3,
                          **{**FAST_SEARCH, "width": None, "batch_size": 8, "timesteps": 2, "refine": 1,
                             "screen": 3})
    outcome = run_search(config, tmp_path / "run")
    report = outcome.report
    assert report["dataset"]["input_shape"] == [2, 34, 34]
    assert report["dataset"]["test"] == 12  # every fifth recording is a test one
    screened = report["signal"]["screen"]
    assert screened["screened"] == 3 and screened["kept"] == 1
    best = max(screened["cells"], key=lambda c: c["screen_fitness"])
    assert outcome.winner.cell == best["cell"] and best["kept"]
    # width 32 (the old default for this input) cannot hold every cell on loihi2: the pre-flight chose another
    assert report["skeleton"]["width"] < 32 and report["preflight"]["verdict"] == "every cell fits"
    assert all(row.feasible for row in outcome.rows)
    assert outcome.winner.feasible and report["mapping"]["cores"] <= 128
    net = build_network(outcome.architecture)
    assert set(net.populations) == reaching_output(net)


def test_deployable_netx_search_returns_a_chain_that_netx_writes(tmp_path):
    from hwnas.arch.genotype import is_chain, parse_cell_key
    from hwnas.formats.netx import write_netx
    from hwnas.sim.quantize import WeightFormat

    config = SearchConfig(deployable="netx", head_pool=2, **FAST_SEARCH)
    assert (config.downsample, config.allow_backward) == ("avgpool", False)
    outcome = run_search(config, tmp_path / "run")
    cells = {row.cell for row in outcome.rows if row.is_candidate}
    assert cells and all(is_chain(parse_cell_key(cell)) for cell in cells)
    assert outcome.report["space_size"] == 18  # chains 0-3, 0-1-3, 0-2-3, 0-1-2-3 with skip or conv3x3 per step
    net = build_network(outcome.architecture)
    net.eval()
    net.fold_batchnorm()
    net.set_weight_format(WeightFormat())
    layers = write_netx(net, tmp_path / "model.h5")
    assert layers[-2].population == "head" and layers[-2].stride == 2


def test_deployable_netx_refuses_max_pooling_in_one_line(capsys):
    from hwnas.cli import main

    assert main(["search", "--deployable", "netx", "--downsample", "maxpool"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--deployable netx needs --downsample avgpool" in err


def test_widths_per_stage_search_with_conv_downsampling(tmp_path, capsys):
    from hwnas.cli import main

    config = SearchConfig(widths=(4, 8, 16), **{**FAST_SEARCH, "width": None})
    assert config.downsample == "conv" and config.stages is None
    outcome = run_search(config, tmp_path / "run")
    arch = outcome.architecture
    assert (arch.stage_widths, arch.stages, arch.downsample) == ((4, 8, 16), 3, "conv")
    assert outcome.report["skeleton"]["widths"] == [4, 8, 16]
    net = build_network(arch)
    assert net.populations["cell3.n3"].shape == (16, 2, 2) and net.populations["down2"].shape == (16, 2, 2)
    assert Architecture.from_dict(arch.to_dict()) == arch
    assert main(["search", "--widths", "8,16", "--downsample", "maxpool"]) == 2
    assert "--widths 8,16 change channels between stages: only --downsample conv" in capsys.readouterr().err
    assert main(["search", "--widths", "8,16", "--stages", "3"]) == 2
    assert "--stages 3 but --widths names 2 stages" in capsys.readouterr().err


def test_preflight_with_conv_downsampling_tries_doubling_widths_first():
    target = load_target("loihi2")
    base = Architecture(cell=LIGHTEST_CELL, input_shape=(2, 34, 34), num_classes=10, width=32, timesteps=8,
                        downsample="conv")
    (template,), report = choose_skeletons(base, target, None, None, None)
    assert report["rejected"][0]["skeleton"] == {"width": 32, "stages": 2, "head_pool": 1, "widths": [32, 64]}
    mapping = map_network(build_network(template.with_cell(HEAVIEST_CELL)), target)
    assert mapping.feasible and len(mapping.cores) <= 128


def test_skeletons_are_searched_with_the_cells(tmp_path):
    from hwnas.nas.rows import CSV_COLUMNS

    config = SearchConfig(strategy="random", candidates=8, skeletons=3, **{**FAST_SEARCH, "refine": 4, "screen": 6, "screen_fraction": 0.25})
    outcome = run_search(config, tmp_path / "run")
    kept = outcome.report["preflight"]["skeletons"]
    assert [s["head_pool"] for s in kept] == [1, 2, 4] and all(s["width"] == 4 for s in kept)
    keys = {f"4/4 pool{s['head_pool']}" for s in kept}
    drawn = [row.skeleton for row in outcome.rows if row.is_candidate]
    assert set(drawn) <= keys and len(set(drawn)) > 1  # candidates are cells in several skeletons
    # the winner is built in its own skeleton, and the refinement trained each candidate in its skeleton
    assert outcome.architecture.skeleton_key == outcome.winner.skeleton
    assert outcome.report["skeleton"]["head_pool"] == outcome.architecture.head_pool
    trained = [c for rung in outcome.report["signal"]["rungs"] for c in rung["cells"]]
    trained += outcome.report["signal"]["screen"]["cells"]
    assert {c["skeleton"] for c in trained} <= keys
    screened = outcome.report["signal"]["screen"]["cells"]
    results = json.loads((tmp_path / "run" / "checkpoint.json").read_text())["results"]
    screen_keys = [key for key in results if key.startswith("screen|")]
    assert len(screen_keys) == len(screened) == 6
    # a candidate screened in another skeleton than the primary one is keyed with it (and trained in it)
    assert any(key.endswith("|" + c["skeleton"]) for key in screen_keys for c in screened if c["skeleton"] in key)
    header = (tmp_path / "run" / "search.csv").read_text().splitlines()[0].split(",")
    assert header == list(CSV_COLUMNS) and "skeleton" in header
    # resuming re-scores nothing and keeps every candidate in its skeleton
    again = run_search(config, tmp_path / "run", resume=True)
    assert [(r.cell, r.skeleton, r.score) for r in again.rows] == [(r.cell, r.skeleton, r.score) for r in outcome.rows]
