import json
import subprocess
import sys

import pytest
import torch

from hwnas.arch.builder import build_network
from hwnas.arch.genotype import Architecture
from hwnas.cli import build_parser, main
from hwnas.sim.seeding import build_seeded

FAST = ["--timesteps", "4", "--width", "4", "--batch-size", "16", "--repeats", "1", "--quiet"]


def test_search_command_writes_run_folder_and_prints_winner(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["search", "--target", "loihi2", "--strategy", "random", "--candidates", "3", "--out", str(out), *FAST])
    printed = capsys.readouterr().out
    assert code == 0
    for name in ("architecture.json", "search.csv", "report.json", "checkpoint.json"):
        assert (out / name).is_file(), name
    arch = Architecture.load(out / "architecture.json")
    assert f"winner: {arch.key}" in printed
    assert "degenerate" in printed and str(out) in printed
    # counts say what they count: cells scored, and evaluations (no supernet in a random search)
    assert "of the 3 candidate cells scored" in printed and "  3 evaluations in" in printed
    # the JSON reloads into the same network: same structure and, with the same seed, the same weights
    report = json.loads((out / "report.json").read_text())
    net_a = build_seeded(lambda: build_network(arch), 0, arch.key)
    net_b = build_seeded(lambda: build_network(Architecture.from_dict(json.loads((out / "architecture.json").read_text()))), 0, arch.key)
    state_a, state_b = net_a.state_dict(), net_b.state_dict()
    assert list(state_a) == list(state_b) and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert report["config"]["candidates"] == 3
    # by default short trainings choose among the candidates the score and the hardware terms preselected
    assert report["config"]["refine"] == 8 and report["signal"]["chosen_by"].startswith("short training")
    assert "chosen by short training" in printed and "after its 2-epoch refinement training" in printed
    runner = report["signal"]["separation"]["runner_up"]["cell"]  # whether the last rung told the two apart
    assert f"the last rung's runner-up {runner} in " in printed and "the validation's sampling noise (" in printed


@pytest.mark.parametrize("argv,message", [
    (["search", "--timesteps", "0"], "--timesteps: must be a positive integer"),
    (["search", "--candidates", "many"], "'many' is not an integer"),
    (["search", "--stem-pool", "twice"], "--stem-pool: must be a positive integer or 'auto', got 'twice'"),
    (["search", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["search", "--dataset", "nmnist", "--data-dir", "."], "no dataset at"),
    (["search", "--target", "tpu"], "unknown target 'tpu'"),
    (["search", "--strategy", "grid"], "invalid choice: 'grid'"),
    (["search", "--resume", "no-such-run"], "cannot resume"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(argv))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_resume_with_malformed_checkpoint(tmp_path, capsys):
    (tmp_path / "checkpoint.json").write_text("{ half")
    assert main(["search", "--resume", str(tmp_path / "checkpoint.json")]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_target_file_with_typo_is_named(tmp_path, capsys):
    target = tmp_path / "chip.toml"
    target.write_text('[target]\nname = "chip"\ndescription = "x"\ntimng = "pipelined"\n')
    assert main(["search", "--target", str(target)]) == 2
    assert "unknown field 'target.timng'" in capsys.readouterr().err


def test_help_explains_every_option():
    parser = build_parser()
    search = parser._subparsers._group_actions[0].choices["search"]
    for action in search._actions:
        assert action.help, action.option_strings
    text = search.format_help()
    for option in ("--target", "--strategy", "--candidates", "--timesteps", "--seed", "--out", "--resume",
                   "--bn-mode", "--no-reset", "--repeats", "--batch-size", "--score"):
        assert option in text


def test_console_script_help_runs_without_lava_or_torch():
    code = ("import sys, hwnas.cli as c; c.build_parser(); "
            "sys.exit(1 if ('torch' in sys.modules or 'lava' in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_targets_list_and_show(capsys):
    assert main(["targets"]) == 0
    listing = capsys.readouterr().out
    assert "loihi2" in listing and "8192 neurons/core" in listing and "software" in listing
    assert main(["targets", "show", "loihi"]) == 0
    shown = capsys.readouterr().out
    assert "synop_j = 23.6e-12" in shown and "Davies et al." in shown
    assert main(["targets", "show", "tpu"]) == 2
    assert "unknown target 'tpu'" in capsys.readouterr().err


def test_estimate_prints_per_layer_table(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--strategy", "random", "--candidates", "2", "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    assert main(["estimate", str(out), "--target", "loihi", "--samples", "16", "--json", str(tmp_path / "e.json")]) == 0
    printed = capsys.readouterr().out
    for word in ("layer", "neurons", "cores", "spikes/inf", "synops/inf", "energy/inf", "stem", "output", "total",
                 "latency:", "feasible:"):
        assert word in printed, word
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["estimate"]["target"] == "loihi" and saved["estimate"]["totals"]["energy_j"] > 0
    assert main(["estimate", str(tmp_path / "nothing")]) == 2
    assert "no architecture at" in capsys.readouterr().err


def test_oversized_width_reports_broken_rules(tmp_path, capsys):
    out = tmp_path / "wide"
    code = main(["search", "--strategy", "random", "--candidates", "2", "--width", "400", "--timesteps", "2",
                 "--batch-size", "8", "--repeats", "1", "--target", "loihi", "--out", str(out), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    # the pre-flight stops it before anything is scored, naming the rule, the layer, the figure and the limit
    assert err.startswith("error: no skeleton fits loihi") and err.count("\n") == 1
    assert "even the lightest cell with width 400, 4 stages, head pooling 1 breaks cores: network needs more " \
           "than 128 cores" in err
    assert "target loihi has 128 (1 chip); lower --width, add --stages, or choose a target with more chips" in err
    assert not (out / "search.csv").exists()


def test_piped_progress_is_plain_lines():
    """On a pipe or file (CI logs, tee) progress is a plain line at most every so often, never carriage returns."""
    import io

    from hwnas.progress import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(enabled=True, stream=stream, every_s=3600)
    for done in range(1, 11):
        bar.update(done, 10, "ablation")
    bar.close()
    assert "\r" not in stream.getvalue()
    assert stream.getvalue().splitlines() == ["search: 1/10 evals: ablation", "search: 10/10 evals: ablation"]


def test_outputs_follow_the_umask_not_mkstemps_0600(tmp_path):
    import os

    from hwnas.io_utils import write_json_atomic

    previous = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "report.json", {"a": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o644
