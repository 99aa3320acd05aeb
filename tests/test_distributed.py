"""Where a search computes: ``--device`` (CUDA when present, refused in one line when absent) and ``--workers``
(Ray tasks on a local cluster the search starts itself) giving the results of a serial run."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hwnas.errors import OptionError
from hwnas.nas.runner import SearchConfig, run_search
from hwnas.sim.seeding import resolve_device

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = not torch.cuda.is_available()


def _hwnas(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hwnas", *argv], capture_output=True, text=True, cwd=ROOT)


def _rows_without_timings(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


# --- --device ----------------------------------------------------------------------------------------------------

def test_device_options_resolve_on_this_machine():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(OptionError, match="must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(OptionError, match="must be auto, cpu, cuda or cuda:N"):
        SearchConfig(device="tpu")


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
def test_a_cuda_device_this_machine_lacks_is_refused_in_one_line(tmp_path):
    for argv in (["search", "--device", "cuda", "--out", str(tmp_path / "s")],
                 ["proxy-check", "--device", "cuda:1", "--out", str(tmp_path / "p")]):
        done = _hwnas(*argv)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"error: --device {argv[2]}: this machine has no CUDA device")
        assert len(done.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "s").exists() and not (tmp_path / "p").exists()  # refused before anything is written
    done = _hwnas("search", "--device", "gpu")
    assert done.returncode == 2 and "argument --device: must be auto, cpu, cuda or cuda:N, got 'gpu'" in done.stderr


def test_the_run_records_its_device_option_and_training_can_override_it(tmp_path):
    from hwnas.training import TrainConfig, train_run

    out = tmp_path / "run"
    config = SearchConfig(strategy="random", candidates=2, timesteps=4, width=8, batch_size=16, repeats=1, refine=0,
                          max_samples=120, device="cpu")
    run_search(config, out)
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["device"] == "cpu" and report["device"] == "cpu"
    trained = train_run(out, TrainConfig(epochs=1, qat_epochs=0, device="cpu")).report
    assert trained["device"] == "cpu" and trained["config"]["device"] == "cpu"
    if NO_CUDA:
        with pytest.raises(OptionError, match="--device cuda: this machine has no CUDA device"):
            train_run(out, TrainConfig(epochs=1, qat_epochs=0, device="cuda"))


# --- --workers: Ray tasks, the serial result ---------------------------------------------------------------------

def test_a_search_on_two_ray_workers_gives_the_serial_result(tmp_path):
    """Scoring, the screening trainings and each refinement rung's trainings run as Ray tasks on a local 2-worker
    cluster; the rows, the screening, the refinement's rungs and the winner equal those of a run in one process
    (the last rung validating on the whole split, the others on a subset, on the workers too)."""
    pytest.importorskip("ray")
    config = SearchConfig(strategy="random", candidates=4, timesteps=4, width=8, batch_size=16, repeats=1, refine=3,
                          max_samples=120, screen_fraction=0.5, val_samples=10)  # screenings as their own task kind
    serial = run_search(config, tmp_path / "serial")
    seen = []
    parallel = run_search(config, tmp_path / "workers", workers=2,
                          progress=lambda done, total, message: seen.append(message))
    assert _rows_without_timings(tmp_path / "serial" / "search.csv") == \
        _rows_without_timings(tmp_path / "workers" / "search.csv")
    assert parallel.report["signal"]["rungs"] == serial.report["signal"]["rungs"]
    assert parallel.report["signal"]["screen"] == serial.report["signal"]["screen"]
    assert serial.report["signal"]["screen"]["screened"] == 4  # all four screened, the best three refined
    assert [rung["val_samples"] for rung in serial.report["signal"]["rungs"]] == [10, serial.report["dataset"]["val"]]
    assert parallel.report["winner"] == serial.report["winner"]
    assert any("on 2 Ray worker(s)" in message for message in seen)
    import ray
    assert not ray.is_initialized()  # the search shut down the cluster it started


def test_ray_is_imported_only_for_workers(tmp_path):
    code = ("import sys; from hwnas.nas.runner import SearchConfig, run_search; "
            f"run_search(SearchConfig(strategy='random', candidates=2, timesteps=2, width=4, batch_size=8, repeats=1, "
            f"refine=0, max_samples=60), {str(tmp_path / 'run')!r}); print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_bad_worker_options_are_refused_in_one_line(tmp_path):
    done = _hwnas("search", "--workers", "0", "--out", str(tmp_path / "w"))
    assert done.returncode == 2 and "argument --workers: must be a positive integer" in done.stderr
    with pytest.raises(OptionError, match="--workers must be a positive integer"):
        run_search(SearchConfig(), tmp_path / "w2", workers=0)
