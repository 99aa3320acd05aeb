"""AutoSNN in hwnas: the one-shot supernet's seeded single-path sampling and resumable training, the spike-aware
fitness, the evolution's operators (valid, canonical, no duplicates) and the evolution strategy end to end."""

import math

import numpy as np
import pytest
import torch
from conftest import FAST_SEARCH, small_arch

from hwnas.arch.builder import build_network
from hwnas.arch.genotype import canonical_cell, cell_key, is_chain
from hwnas.cli import main
from hwnas.data import load_dataset
from hwnas.nas.evolution import crossover, run_evolution
from hwnas.nas.rows import Row
from hwnas.nas.runner import SearchConfig, run_search
from hwnas.nas.space import SearchSpace
from hwnas.nas.supernet import Supernet, spike_aware_fitness


def test_spike_aware_fitness_on_hand_computed_numbers():
    # F = Acc x (N / N_avg)^lambda: twice the average spikes at lambda -0.08 costs a factor 2^-0.08 = 0.946088
    assert spike_aware_fitness(0.9, 200.0, 100.0, -0.08) == pytest.approx(0.9 * 0.9460576, rel=1e-6)
    assert spike_aware_fitness(0.8, 50.0, 100.0, -0.08) == pytest.approx(0.8 * 1.0570180, rel=1e-6)
    assert spike_aware_fitness(0.7, 100.0, 100.0, -0.5) == pytest.approx(0.7)
    assert spike_aware_fitness(0.9, 0.0, 100.0, -0.08) == 0.0  # a silent network computes nothing


def test_supernet_paths_are_seeded_and_switch_on_exactly_the_cell():
    arch = small_arch()
    space = SearchSpace()
    supernet = Supernet(arch, space, seed=3, device=torch.device("cpu"))
    first = [supernet.sample_path(np.random.default_rng([3, 4, 1])) for _ in range(1)]
    again = [supernet.sample_path(np.random.default_rng([3, 4, 1])) for _ in range(1)]
    assert first == again
    rng = np.random.default_rng(0)
    for _ in range(20):
        cell = supernet.sample_path(rng)
        assert cell == canonical_cell(cell) and space.is_valid(cell)
        supernet.activate(cell)
        expected = set(build_network(arch.with_cell(cell)).synapses.keys())
        assert {c.module_key for c in supernet.net.active_connections()} == expected


def test_supernet_training_resumes_to_the_same_weights(tmp_path):
    arch = small_arch()
    splits = load_dataset("digits", None, arch.timesteps, 0, 200)
    space = SearchSpace()
    straight = Supernet(arch, space, 0, torch.device("cpu"))
    straight.train(splits, 2, 2e-3, 32, tmp_path / "straight.pt")
    interrupted = Supernet(arch, space, 0, torch.device("cpu"))
    interrupted.train(splits, 1, 2e-3, 32, tmp_path / "resumed.pt")  # as if stopped after epoch 1
    resumed = Supernet(arch, space, 0, torch.device("cpu"))
    resumed.train(splits, 2, 2e-3, 32, tmp_path / "resumed.pt")
    assert [e["loss"] for e in resumed.log] == [e["loss"] for e in straight.log]
    for key, value in straight.net.state_dict().items():
        assert torch.equal(value, resumed.net.state_dict()[key]), key
    assert resumed.spikes_avg == straight.log[-1]["spikes_per_sample"] > 0
    other = Supernet(arch, space, 1, torch.device("cpu"))  # another seed: not this file's supernet
    with pytest.raises(Exception, match="supernet of another search"):
        other.train(splits, 2, 2e-3, 32, tmp_path / "resumed.pt")


@pytest.mark.parametrize("chains_only", [False, True])
def test_crossover_and_mutation_give_valid_canonical_cells(chains_only):
    space = SearchSpace(chains_only=chains_only)
    rng = np.random.default_rng(5)
    made = 0
    for _ in range(200):
        a, b = space.sample(rng), space.sample(rng)
        child = crossover(a, b, rng, space)
        if child is not None:
            made += 1
            assert child == canonical_cell(child) and space.is_valid(child)
            parents = [{(e.src, e.dst): e for e in parent} for parent in (a, b)]
            for edge in child:  # every live edge comes from a parent (dead ones are set to zero)
                pair = (edge.src, edge.dst)
                assert edge.op == "zero" or edge in (parents[0][pair], parents[1][pair])
        mutant = space.mutate(a, rng)
        assert mutant != a and mutant == canonical_cell(mutant) and space.is_valid(mutant)
        if chains_only:
            assert is_chain(mutant) and (child is None or is_chain(child))
    assert made > 50


def test_evolution_scores_distinct_cells_and_keeps_the_best():
    space = SearchSpace()

    def convs(cell, skeleton, extra):  # a fitness known in advance: the number of convolutions
        score = float(sum(edge.op == "conv3x3" for edge in cell))
        return Row(cell=cell_key(cell), score=score, degenerate=False, fitness=score, **extra)

    result = run_evolution(space, np.random.default_rng(0), convs, population=8, generations=4)
    keys = [row.cell for row in result.rows]
    assert len(keys) == 40 and len(set(keys)) == 40  # no duplicates
    assert [row.round for row in result.rows] == [g for g in range(5) for _ in range(8)]
    assert max(row.score for row in result.rows) == 6.0  # evolution reached the all-convolution cell
    assert sum(e.op == "conv3x3" for e in result.cell) == 6
    first = max(row.score for row in result.rows if row.round == 0)
    assert first < 6.0  # ... which the random start had not


def test_evolution_search_end_to_end_and_resume(tmp_path):
    config = SearchConfig(strategy="evolution", population=4, generations=1, supernet_epochs=1,
                          **{**FAST_SEARCH, "batch_size": 32})
    outcome = run_search(config, tmp_path / "run")
    assert (tmp_path / "run" / "supernet.pt").is_file()
    supernet = outcome.report["signal"]["supernet"]
    assert supernet["epochs"] == 1 and supernet["spikes_avg"] > 0
    candidates = [r for r in outcome.rows if r.is_candidate]
    assert len(candidates) == 8 and len({r.cell for r in candidates}) == 8
    for row in candidates:
        expected = 100 * spike_aware_fitness(row.accuracy, row.spikes_per_sample, supernet["spikes_avg"], -0.08)
        assert math.isclose(row.score, expected, rel_tol=1e-9)
        energy_term = row.score - row.fitness  # the refinement's weight: 1 point per doubling of energy
        assert math.isclose(energy_term, math.log2(row.energy_j / 1e-6), rel_tol=1e-9)
    assert outcome.winner.fitness == max(r.fitness for r in candidates if r.usable)
    assert outcome.report["signal"]["chosen_by"].startswith("spike-aware fitness")
    again = run_search(config, tmp_path / "run", resume=True)
    assert [(r.cell, r.score) for r in again.rows] == [(r.cell, r.score) for r in outcome.rows]


def test_evolution_refuses_several_skeletons_in_one_line(capsys):
    assert main(["search", "--strategy", "evolution", "--skeletons", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--strategy evolution searches cells in one skeleton" in err
