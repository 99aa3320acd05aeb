"""hwnas from Python, as in a notebook: a tonic-style event Dataset in memory -> hwnas.nas -> hwnas.training.loop ->
an nn.Module that returns logits -> hwnas.formats; no run folder unless asked; bad data in one line."""

import importlib.util
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import hwnas
from hwnas.errors import DataError, OptionError

TINY = dict(strategy="random", candidates=3, width=4, batch_size=16, repeats=1, refine=2)


class EventFrames(Dataset):
    """Like a tonic dataset with ToFrame(n_time_bins=T): (T, 2, H, W) uint8 spike counts and an int label; each
    class lights its own quadrant, with random background events."""

    def __init__(self, samples: int = 240, timesteps: int = 4, size: int = 8, classes: int = 4, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.labels = rng.integers(classes, size=samples)
        half = size // 2
        self.frames = (rng.random((samples, timesteps, 2, size, size)) < 0.05).astype(np.uint8)
        for index, label in enumerate(self.labels):
            y, x = divmod(int(label), 2)
            patch = rng.random((timesteps, 2, half, half)) < 0.5
            self.frames[index, :, :, y * half:(y + 1) * half, x * half:(x + 1) * half] |= patch.astype(np.uint8)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return self.frames[index], int(self.labels[index])


def test_search_train_export_on_a_tonic_style_dataset_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may appear here: no run folder was asked for
    data = EventFrames()
    found = hwnas.search(data, "loihi2", timesteps=4, name="quadrants", **TINY)
    assert found.folder is None and os.listdir(tmp_path) == []
    assert found.report["dataset"] == {"name": "quadrants", "kind": "frames", "input_shape": [2, 8, 8],
                                       "num_classes": 4, "train": 168, "val": 36, "test": 36}
    assert found.architecture.input_shape == (2, 8, 8) and found.winner["cell"] == found.architecture.key
    assert len(found.rows) == found.report["evaluations"] and found.report["signal"]["refine"] == 2

    trained = hwnas.train(found, epochs=3, qat_epochs=1)
    assert trained.folder is None and os.listdir(tmp_path) == []
    model = trained.model
    assert isinstance(model, torch.nn.Module)
    frames = data.frames[:32]
    logits = model(torch.as_tensor(frames))  # samples as the dataset gives them: (B, T, C, H, W)
    assert isinstance(logits, torch.Tensor) and logits.shape == (32, 4)
    # the model handed back is the trained one: on the test split it scores what training measured, exactly
    # (9 optimiser steps on 168 samples learn little: learning itself is tested on digits in test_train.py)
    from hwnas.data.splits import strictly_correct

    test_x, test_y = found.splits.split("test")
    accuracy = float(strictly_correct(model(test_x), test_y).double().mean())
    assert accuracy == trained.report["test_accuracy"]
    assert trained.report["quantized"] and trained.report["dataset"]["name"] == "quadrants"

    path = hwnas.export(trained, tmp_path / "model.nir")
    assert path.is_file() and sorted(os.listdir(tmp_path)) == ["model.nir"]
    from hwnas.formats.nir import load
    assert len(load(path).populations) == len(model.network.populations)
    assert hwnas.export(trained, tmp_path / "model.onnx", format="onnx").is_file()  # checked against hwnas inside

    # on the chip's model: the data the model trained on by default, Lava fixed-point against the integer twin
    if importlib.util.find_spec("lava"):  # the lava extra (Python 3.10)
        deployed = hwnas.deploy(trained, samples=6)
        assert deployed.backend == "lava-fixed" and deployed.samples == 6
        assert all(row["identical_share"] == 1.0 for row in deployed.layers.values())
        validated = hwnas.validate(trained, samples=6, backends=("hwnas_int", "lava_fixed"))
        assert validated.pairs["hwnas_int/lava_fixed"]["identical"] and validated.energy["measured_lava_fixed_j"] > 0
        # fine-tuned in Loihi's arithmetic, the trained model computes what the chip computes
        assert validated.pairs["trained/lava_fixed"]["identical"]
        assert validated.pairs["trained/lava_fixed"]["check"] == "exact"
    else:
        with pytest.raises(OptionError, match="Lava is not installed"):
            hwnas.deploy(trained, samples=6)
    assert hwnas.deploy(trained, samples=6, backend="norse").samples == 6

    # NeuroBench's own harness on the trained model and its test split: the report's metrics, NeuroBench's names
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
    from neurobench.metrics.workload import ActivationSparsity, ClassificationAccuracy
    test = DataLoader(list(zip(found.splits.test_x, found.splits.test_y)), batch_size=16)
    measured = Benchmark(hwnas.neurobench_model(trained), test, [], [],
                         [[Footprint, ConnectionSparsity, ParameterCount],
                          [ActivationSparsity, ClassificationAccuracy]]).run(quiet=True)
    reported = trained.report["neurobench"]
    assert measured["Footprint"] == reported["footprint"] and measured["ParameterCount"] == reported["parameter_count"]
    assert measured["ConnectionSparsity"] == round(reported["connection_sparsity"], 4)
    assert measured["ActivationSparsity"] == pytest.approx(reported["activation_sparsity"], abs=1e-12)
    assert measured["ClassificationAccuracy"] == pytest.approx(trained.report["test_accuracy"])


def test_a_run_folder_is_written_when_asked_and_static_data_loads_from_a_dataloader(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand((120, 1, 8, 8), generator=g)
    y = (x.mean((1, 2, 3)) > 0.5).long()
    loader = DataLoader(list(zip(x, y)), batch_size=32)
    found = hwnas.search(loader, "software", timesteps=4, out=tmp_path / "run", **{**TINY, "refine": 0})
    assert found.folder == tmp_path / "run" and (tmp_path / "run" / "report.json").is_file()
    assert found.splits.kind == "static" and found.splits.num_classes == 2
    trained = hwnas.train(found, epochs=1, qat_epochs=0)
    assert trained.folder == tmp_path / "run" and (tmp_path / "run" / "model.pt").is_file()
    assert trained.model(x[:5]).shape == (5, 2)
    # out= trains again beside the search's folder, on the data in memory, with another seed
    first = (tmp_path / "run" / "model.pt").read_bytes()
    other = hwnas.train(found, out=tmp_path / "seed1", epochs=1, qat_epochs=0, seed=1, progress=False)
    assert other.folder == tmp_path / "seed1" and other.report["seed"] == 1 and trained.report["seed"] == 0
    assert (tmp_path / "run" / "model.pt").read_bytes() == first  # the search's folder keeps its model
    assert (tmp_path / "seed1" / "architecture.json").read_bytes() == (tmp_path / "run" / "architecture.json").read_bytes()
    assert other.model(x[:5]).shape == (5, 2) and other.report["dataset"] == trained.report["dataset"]
    # a run folder by path, with out= naming it again: trains there, as without out=
    assert hwnas.train(tmp_path / "seed1", out=tmp_path / "seed1", data=loader, epochs=1, qat_epochs=0,
                       progress=False).folder == tmp_path / "seed1"
    again = hwnas.search(loader, out=tmp_path / "run", resume=True, progress=False)  # data in memory, given again
    assert again.winner == found.winner and again.splits.num_classes == 2
    with pytest.raises(OptionError, match="recorded options"):
        hwnas.search(loader, out=tmp_path / "run", resume=True, candidates=5)
    with pytest.raises(OptionError, match="seed= cannot change them"):  # named, not silently ignored
        hwnas.search(loader, out=tmp_path / "run", resume=True, seed=3)
    with pytest.raises(OptionError, match="target= cannot change them"):
        hwnas.search(loader, "loihi", out=tmp_path / "run", resume=True)
    # the recorded values themselves may be given again
    assert hwnas.search(loader, "software", timesteps=4, out=tmp_path / "run", resume=True,
                        progress=False).winner == found.winner
    assert hwnas.export(tmp_path / "run") == tmp_path / "run" / "model.nir"  # a run folder's default file
    assert str(found.architecture).startswith(found.winner["cell"] + " (")


def test_bad_data_is_one_line():
    with pytest.raises(DataError, match=r"static images must hold intensities in \[0, 1\], found \[0, 255\]"):
        hwnas.as_splits((torch.tensor([[[[0.0, 255.0]]]] * 10), torch.zeros(10)), timesteps=4)
    with pytest.raises(DataError, match="event frames have 6 time bins but timesteps=4"):
        hwnas.as_splits((torch.zeros((10, 6, 2, 4, 4)), torch.zeros(10)), timesteps=4)
    with pytest.raises(DataError, match="is a str, not an array"):
        hwnas.as_splits([("not an image", 0)] * 10, timesteps=4)
    with pytest.raises(DataError, match="10 samples but 9 labels"):
        hwnas.as_splits((torch.zeros((10, 1, 4, 4)), torch.zeros(9)), timesteps=4)
    nan_images = torch.rand((20, 1, 4, 4))
    nan_images[3, 0, 1, 1] = float("nan")
    with pytest.raises(DataError, match="1 image values are NaN or infinite"):
        hwnas.search((nan_images, torch.arange(20) % 2), "software", timesteps=4)
    with pytest.raises(DataError, match=r"one class only \(label 1\)"):
        hwnas.search((torch.rand((20, 1, 4, 4)), torch.ones(20)), "software", timesteps=4)
    with pytest.raises(OptionError, match="needs 'train' and 'test'"):
        hwnas.as_splits({"train": (torch.zeros((10, 1, 4, 4)), torch.zeros(10))}, timesteps=4)


def test_export_and_deploy_name_an_unknown_format_or_backend(tmp_path):
    from conftest import small_arch
    from hwnas.arch.builder import build_network

    arch = small_arch()
    model = hwnas.SpikingClassifier(build_network(arch), arch)
    with pytest.raises(OptionError, match="unknown export format 'h5' \\(choose nir, onnx, netx\\)"):
        hwnas.export(model, tmp_path / "model.h5", format="h5")
    with pytest.raises(OptionError, match="backend must be lava or norse"):
        hwnas.deploy(model, backend="loihi")
    assert os.listdir(tmp_path) == []


def test_report_writes_one_html_page_of_a_run_folder(tmp_path):
    import base64
    import html
    import re
    import subprocess
    import sys

    g = torch.Generator().manual_seed(1)
    x = torch.rand((120, 1, 8, 8), generator=g)
    y = (x.mean((1, 2, 3)) > 0.5).long()
    found = hwnas.search((x, y), "loihi2", timesteps=4, out=tmp_path / "run", name="halves", **TINY)
    page = hwnas.report(found)
    text = page.read_text(encoding="utf-8")
    assert page == tmp_path / "run" / "report.html"
    assert html.escape(found.architecture.key) in text and "halves (static, 1x8x8, 2 classes)" in text
    assert "training: not run yet (<code>hwnas train " in text and "validation: not run yet" in text
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 1 and base64.b64decode(images[0]) == (tmp_path / "run" / "pareto.png").read_bytes()
    separation = found.report["signal"]["separation"]  # the page says whether the last rung told the two apart
    assert html.escape(f"the runner-up {separation['runner_up']['cell']}: {separation['margin']:.2f} points") in text

    trained = hwnas.train(found, epochs=1, qat_epochs=1)
    text = hwnas.report(trained, out=tmp_path / "page.html").read_text(encoding="utf-8")
    metrics = trained.report["neurobench"]
    assert f"<td>{metrics['parameter_count']:,}</td>" in text and f"{100 * trained.report['test_accuracy']:.2f}%" in text
    assert "validation: not run yet" in text and "training: not run yet" not in text

    with pytest.raises(OptionError, match="this result has no run folder"):
        hwnas.report(hwnas.search((x, y), "software", timesteps=4, **{**TINY, "refine": 0}))
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([sys.executable, "-m", "hwnas", "report", str(empty)], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "no search report in" in done.stderr and os.listdir(empty) == []
