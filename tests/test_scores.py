import math

import numpy as np
import pytest
import torch

from hwnas.nas.names import SCORE_NAMES
from hwnas.nas.scores import SCORES, naswot_kernel, sahd_kernel, score_codes


def reference_sahd(code_sets):
    """Slow, literal SAHD: loops over populations, steps and sample pairs (ARCHITECTURE.md's formula)."""
    kernels = []
    for codes in code_sets:
        codes = codes.numpy().astype(int)
        steps, batch, n = codes.shape
        for t in range(steps):
            k = np.zeros((batch, batch))
            for i in range(batch):
                for j in range(batch):
                    xi, xj = codes[t, i], codes[t, j]
                    h = int(np.sum(xi != xj))
                    si, sj = xi.sum() / n, xj.sum() / n
                    e = n * (si * (1 - sj) + (1 - si) * sj)
                    k[i, j] = n - 0.5 * h / (e + 1e-3)
            kernels.append(k)
    mean = np.mean(kernels, axis=0)
    return np.linalg.slogdet(mean)[1]


def reference_naswot(code_sets):
    flat = np.concatenate([c.permute(1, 0, 2).reshape(c.shape[1], -1).numpy().astype(int) for c in code_sets], 1)
    n = flat.shape[1]
    k = np.array([[n - np.sum(a != b) for b in flat] for a in flat], dtype=float)
    return np.linalg.slogdet(k)[1]


def random_codes(seed, shapes, rate=0.3):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(shape, generator=g) < rate for shape in shapes]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sahd_matches_slow_reference(seed):
    codes = random_codes(seed, [(3, 8, 40), (2, 8, 17)], rate=0.2 + 0.1 * seed)
    result = score_codes("sahd", codes)
    assert not result.degenerate
    assert result.score == pytest.approx(reference_sahd(codes), rel=1e-9, abs=1e-7)


def test_naswot_matches_slow_reference():
    codes = random_codes(5, [(3, 6, 30), (2, 6, 11)])
    result = score_codes("naswot", codes)
    assert result.score == pytest.approx(reference_naswot(codes), rel=1e-9, abs=1e-7)


def test_duplicate_codes_are_degenerate_not_noise():
    codes = random_codes(0, [(3, 8, 40), (2, 8, 17)])
    for c in codes:
        c[:, 5] = c[:, 2]  # samples 2 and 5 identical everywhere
    for name in SCORES:
        result = score_codes(name, codes)
        assert result.degenerate and result.score == -math.inf
        assert result.duplicate_pairs == 1
        assert "identical spike codes" in result.reason


def test_silent_network_is_degenerate_and_silence_is_measured():
    silent = [torch.zeros(4, 8, 30, dtype=torch.bool)]
    result = score_codes("sahd", silent)
    assert result.degenerate and result.silent_share == 1.0
    partly = random_codes(1, [(4, 8, 30)])
    partly[0][:2] = False  # 2 of 4 steps silent for every sample
    assert score_codes("sahd", partly).silent_share == pytest.approx(0.5)


def test_one_duplicate_step_is_not_degenerate():
    codes = random_codes(3, [(3, 8, 40)])
    codes[0][1, 4] = codes[0][1, 0]  # identical in one step only: the mean kernel stays regular
    assert not score_codes("sahd", codes).degenerate


def test_registry_names_match_cli_choices():
    assert set(SCORES) == set(SCORE_NAMES)
    assert SCORES["sahd"] is sahd_kernel and SCORES["naswot"] is naswot_kernel


@pytest.mark.parametrize("bn_mode", ["identity", "batch"])
def test_rate_calibration_brings_every_population_to_the_target_rate(bn_mode):
    from conftest import small_arch

    from hwnas.arch.builder import build_network
    from hwnas.nas.rate_init import calibrate_firing, window_rates

    net = build_network(small_arch("0-1:conv3x3 0-2:zero 0-3:skip 1-2:conv3x3 1-3:zero 2-3:conv3x3"))
    net.train(bn_mode == "batch")
    batch = (torch.rand(4, 32, 1, 8, 8, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    before = window_rates(net, batch)
    reached = calibrate_firing(net, batch, 0.2)
    assert set(reached) == set(before) and "down" not in net.current_gain  # the max-pool OR keeps its semantics
    calibrated = [name for name in net.current_gain]
    assert "stem" in calibrated and "output" in calibrated
    for name in calibrated:
        assert abs(reached[name] - 0.2) < 0.05, (name, reached[name], before[name])
    with pytest.raises(ValueError, match="target firing rate"):
        calibrate_firing(net, batch, 1.5)


def test_step_grams_give_the_terms_of_recorded_codes_bit_for_bit():
    from hwnas.nas.scores import StepGrams

    codes = [c.float() for c in random_codes(7, [(5, 12, 40), (3, 12, 7)])]
    codes[0][2] = 0.0  # a silent step, given to StepGrams as None
    grams = StepGrams(12, torch.device("cpu"))
    for number, population in enumerate(codes):
        permutation = torch.randperm(population.shape[2], generator=torch.Generator().manual_seed(number))
        for step in population:
            silent = number == 0 and not step.any()
            grams.add(number, None if silent else step[:, permutation], population.shape[2])  # any neuron order
    terms = [grams.terms(0), grams.terms(1)]
    assert grams.terms(2) is None
    for name in SCORES:
        assert score_codes(name, terms) == score_codes(name, codes)


def _conv_network():
    from conftest import FEEDBACK, small_arch

    from hwnas.arch.builder import build_network
    from hwnas.sim.seeding import build_seeded

    arch = small_arch(FEEDBACK, input_shape=(2, 12, 12), width=6)
    g = torch.Generator().manual_seed(8)
    batches = [torch.bernoulli(torch.full((4, 10, 2, 12, 12), 0.3), generator=g) for _ in range(2)]
    return lambda: build_seeded(lambda: build_network(arch), 0, "evaluator"), batches


def _xylo_network():  # Xylo neurons spike several times a step: codes are counts, not 0/1
    from test_xylo import _counts, _dense_network

    return lambda: _dense_network(width=16)[1], [_counts(4, samples=10, seed=seed) for seed in (1, 2)]


@pytest.mark.parametrize("network", [_conv_network, _xylo_network])
@pytest.mark.parametrize("reset_state", [True, False])  # False: one stream, a window per repeat
def test_the_evaluator_scores_what_the_recorded_codes_score(reset_state, network):
    """Scores gathered while simulating (StepGrams) equal scores of the recorded codes' windows: each population
    reachable from the input, over T steps from each repeat's offset plus its arrival step."""
    from hwnas.nas.evaluate import Evaluator, ScoreConfig

    build, batches = network()
    steps = batches[0].shape[0]
    for name in SCORES:
        config = ScoreConfig(score=name, batch_size=10, repeats=2, reset_state=reset_state)
        scored = Evaluator(batches, config, torch.device("cpu")).evaluate(build())
        net = build()
        net.train()
        arrival = net.arrival_steps()
        runs = [(batch, [0]) for batch in batches] if reset_state else [(torch.cat(batches), [0, steps])]
        results = []
        with torch.no_grad():
            for inputs, offsets in runs:
                codes = net(inputs, record=True).codes
                for offset in offsets:
                    windows = [codes[p][offset + int(arrival[p]): offset + int(arrival[p]) + steps] for p in codes
                               if not math.isinf(arrival[p])]
                    results.append(score_codes(name, [w for w in windows if w.shape[0]]))
        assert scored["score"] == sum(r.score for r in results) / len(results)
        assert math.isfinite(scored["score"]) or scored["degenerate"]
