import json
import math

import pytest

from hwnas.cli import main
from hwnas.nas.proxy_check import PROXIES, pipeline_quality, rank_agreement, sample_cells


def test_rank_agreement_of_perfect_reversed_and_degenerate_orders():
    accuracy = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    same = rank_agreement([1, 2, 3, 4, 5, 6], accuracy, 200, 0)
    assert same["kendall_tau"] == pytest.approx(1.0) and same["spearman_rho"] == pytest.approx(1.0)
    assert same["tau_ci95"][0] == pytest.approx(1.0)
    reverse = rank_agreement([6, 5, 4, 3, 2, 1], accuracy, 200, 0)
    assert reverse["kendall_tau"] == pytest.approx(-1.0)
    # a degenerate score (-inf) ranks below every finite one
    floor = rank_agreement([-math.inf, 2, 3, 4, 5, 6], accuracy, 200, 0)
    assert floor["kendall_tau"] == pytest.approx(1.0)


def test_sampled_cells_are_distinct_and_seeded():
    cells = sample_cells(10, 3)
    assert len(set(cells)) == 10
    assert cells == sample_cells(10, 3) and cells != sample_cells(10, 4)


def test_proxy_check_cli_reports_every_proxy_and_resumes_without_retraining(tmp_path, capsys):
    out = tmp_path / "proxy"
    argv = ["proxy-check", "--candidates", "4", "--epochs", "1", "--width", "4", "--timesteps", "4",
            "--max-samples", "300", "--supernet-epochs", "1", "--screen-fraction", "0.5", "--out", str(out)]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert first.err.count("training (1 epochs)") == 4 * 3  # two seeds and the short-training proxy per cell
    assert first.err.count("screen training (0.5 of an epoch)") == 4  # the search's screening rung
    assert first.err.count("supernet epoch 1/1") == 1 and (out / "supernet.pt").is_file()
    report = json.loads((out / "proxy_check.json").read_text())
    assert set(report["proxies"]) == set(PROXIES)
    state = json.loads((out / "proxy_check_state.json").read_text())
    assert all(0 <= entry["proxies"]["supernet"] <= 1 for entry in state["candidates"].values())
    for row in report["proxies"].values():
        assert -1 <= row["kendall_tau"] <= 1 and row["tau_ci95"][0] <= row["tau_ci95"][1]
    assert "seed_ceiling" in report and set(report["passes"]) == set(PROXIES) - {"neg_spikes", "neg_convs"}
    assert (out / "proxy_check.png").stat().st_size > 1000
    # the search's two stages, named with the figures that matter, always at the same keys
    assert report["preselection"]["proxy"] == "screen" and report["selection"]["proxy"] == "short_train"
    assert report["preselection"]["kendall_tau"] == report["proxies"]["screen"]["kendall_tau"]
    assert set(report["pipeline"]) == set(PROXIES) - {"short_train"}
    # the search keeps 8 of its 25 pool cells: of 4 cells here, round(1.28) = 1, and never fewer than two
    assert all(row["kept"] == 2 and 0 <= row["top_quartile_recall"] <= 1 for row in report["pipeline"].values())
    assert "the search's preselection: screen" in first.out and "top-quartile recall" in first.out
    for name in PROXIES:
        assert name in first.out
    state = (out / "proxy_check_state.json").read_text()
    assert main(argv) == 0
    assert "training" not in capsys.readouterr().err  # nothing retrained
    assert (out / "proxy_check_state.json").read_text() == state


def test_proxy_check_refuses_state_written_with_other_settings(tmp_path, capsys):
    out = tmp_path / "proxy"
    out.mkdir()
    (out / "proxy_check_state.json").write_text(json.dumps({"config": {"candidates": 99}, "candidates": {}}))
    assert main(["proxy-check", "--candidates", "4", "--out", str(out)]) == 2
    assert "other settings" in capsys.readouterr().err


def test_the_search_keeps_a_third_of_its_pool():
    from hwnas.nas.proxy_check import search_keep_share
    from hwnas.nas.runner import SearchConfig

    assert search_keep_share(SearchConfig()) == 8 / 25  # a prune search's final cell and 24 random ones
    assert search_keep_share(SearchConfig(screen=10)) == 8 / 10
    assert search_keep_share(SearchConfig(screen=0, refine=4)) == 4 / 13
    assert search_keep_share(SearchConfig(screen=2, refine=4)) == 4 / 13  # no screening below --refine
    assert search_keep_share(SearchConfig(screen=40)) == 8 / 40  # the prune pool grows to what is screened
    from hwnas.nas.proxy_check import search_preselection_proxy

    assert search_preselection_proxy(SearchConfig()) == "screen"
    assert search_preselection_proxy(SearchConfig(screen=2, refine=4)) == "sahd_batch"
    assert search_preselection_proxy(SearchConfig(refine=0)) == "sahd_batch"


def test_pipeline_quality_on_hand_computed_ranks():
    # 8 cells, accuracy rising with the index: the top quartile is cells 6 and 7 (75th percentile 0.625)
    accuracy = [i / 8 for i in range(8)]
    preselect = [0.0, 9.0, 8.0, 1.0, 2.0, 3.0, 7.0, float("-inf")]  # keeps 1, 2, 6 at a share of 3/8
    select = [0.0, 0.5, 0.9, 0.0, 0.0, 0.0, 0.7, 1.0]  # among the kept, cell 2 trains best
    row = pipeline_quality(preselect, select, accuracy, 3 / 8)
    assert row["kept"] == 3 and row["top_quartile_recall"] == 0.5  # cell 6 kept, cell 7 (-inf) not
    assert row["chosen_accuracy"] == 2 / 8 and row["chosen_percentile"] == 37.5 and not row["chosen_in_top_quartile"]
    perfect = pipeline_quality(accuracy, accuracy, accuracy, 3 / 8)
    assert perfect["top_quartile_recall"] == 1.0 and perfect["chosen_percentile"] == 100.0
    assert pipeline_quality(accuracy, accuracy, accuracy, 0.01)["kept"] == 2  # never fewer than two
