"""Real benchmark shapes on Loihi 2: the pre-flight fits a skeleton the chip can hold (N-MNIST 34x34x2,
CIFAR-10 3x32x32, DVS Gesture 2x32x32), a search on N-MNIST-format files returns a feasible winner, an
impossible request stops within seconds naming the rule, and no network carries a population that cannot
reach the output."""

import time

import pytest
from conftest import FAST_SEARCH
from test_data import make_nmnist

from hwnas.arch.builder import build_network
from hwnas.arch.genotype import Architecture
from hwnas.errors import SearchError
from hwnas.hw_models import load_target
from hwnas.hw_models.mapping import map_network
from hwnas.search.preflight import HEAVIEST_CELL, LIGHTEST_CELL, choose_skeleton
from hwnas.search.runner import SearchConfig, run_search
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
    template, report = choose_skeleton(base, target, None, None, None)
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
        choose_skeleton(base, target, None, None, None, max_cores=1)
    assert time.perf_counter() - started < 10
    with pytest.raises(SearchError, match=r"breaks fanin: layer output needs 9248 input axons .* allows 4096"):
        choose_skeleton(base, target, 32, 2, 1)


def test_nmnist_search_returns_a_feasible_winner_without_dead_populations(tmp_path):
    make_nmnist(tmp_path, per_class=6)
    config = SearchConfig(dataset="nmnist", data_dir=str(tmp_path), strategy="random", candidates=3,
                          **{**FAST_SEARCH, "width": None, "batch_size": 8, "timesteps": 2})
    outcome = run_search(config, tmp_path / "run")
    report = outcome.report
    assert report["dataset"]["input_shape"] == [2, 34, 34]
    # width 32 (the old default for this input) cannot hold every cell on loihi2: the pre-flight chose another
    assert report["skeleton"]["width"] < 32 and report["preflight"]["verdict"] == "every cell fits"
    assert all(row.feasible for row in outcome.rows)
    assert outcome.winner.feasible and report["mapping"]["cores"] <= 128
    net = build_network(outcome.architecture)
    assert set(net.populations) == reaching_output(net)
