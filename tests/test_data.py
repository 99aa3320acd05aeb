import pickle

import numpy as np
import pytest
import torch

from hwnas.data import load_dataset
from hwnas.data.splits import encode_batch
from hwnas.errors import DataError, OptionError


def test_digits_splits_are_disjoint_seeded_and_normalised():
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=0)
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    sizes = [a.train_x.shape[0], a.val_x.shape[0], a.test_x.shape[0]]
    assert sum(sizes) == 1797 and sizes[1] == sizes[2] == 270
    assert torch.equal(a.train_x, b.train_x)
    assert 0.0 <= float(a.train_x.min()) and float(a.train_x.max()) == 1.0
    other = load_dataset("digits", seed=1)
    assert not torch.equal(a.test_y, other.test_y)


def test_rate_and_direct_encoding():
    x = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])
    g = torch.Generator().manual_seed(0)
    rate = encode_batch(x.expand(2000, 1, 2, 2), "static", 5, "rate", g)
    assert rate.shape == (5, 2000, 1, 2, 2)
    assert set(rate.unique().tolist()) <= {0.0, 1.0}
    means = rate.mean(dim=(0, 1)).flatten()
    assert means.tolist() == pytest.approx([0.0, 1.0, 0.5, 0.25], abs=0.02)
    direct = encode_batch(x, "static", 3, "direct")
    assert direct.shape == (3, 1, 1, 2, 2) and torch.equal(direct[2], x)
    with pytest.raises(OptionError, match="unknown encoding"):
        encode_batch(x, "static", 3, "latency")


def write_nmnist_file(path, events):
    """N-MNIST's 40-bit format: x, y, polarity bit + 23-bit timestamp (big-endian bytes)."""
    raw = bytearray()
    for x, y, p, ts in events:
        raw += bytes([x, y, (p << 7) | ((ts >> 16) & 0x7F), (ts >> 8) & 0xFF, ts & 0xFF])
    path.write_bytes(bytes(raw))


def make_nmnist(root, per_class=2):
    rng = np.random.default_rng(0)
    for split in ("Train", "Test"):
        for digit in (0, 1, 2):
            folder = root / "NMNIST" / split / str(digit)
            folder.mkdir(parents=True)
            for k in range(per_class):
                ts = np.sort(rng.integers(0, 300_000, 50))
                events = [(int(rng.integers(0, 34)), int(rng.integers(0, 34)), int(rng.integers(0, 2)), int(t))
                          for t in ts]
                events.append((digit * 10, 33, 1, 150_000))  # a known event: x = 10 * digit, y = 33, ON
                events.sort(key=lambda e: e[3])  # recordings are in time order
                write_nmnist_file(folder / f"{k:05d}.bin", events)


def test_nmnist_loader_reads_tonic_layout(tmp_path):
    make_nmnist(tmp_path)
    splits = load_dataset("nmnist", tmp_path, timesteps=4)
    assert splits.kind == "frames" and splits.input_shape == (2, 34, 34)
    assert splits.train_x.shape[1:] == (4, 2, 34, 34)
    assert splits.train_x.shape[0] + splits.val_x.shape[0] == 6 and splits.test_x.shape[0] == 6
    assert splits.train_x.dtype == torch.uint8 and int(splits.train_x.max()) == 1
    test_labels = splits.test_y.tolist()
    for index, label in enumerate(test_labels):
        assert splits.test_x[index, :, 1, 33, label * 10].sum() >= 1  # (t, polarity, y, x)
    encoded = encode_batch(splits.test_x[:2], "frames", 4, "rate")
    assert encoded.shape == (4, 2, 2, 34, 34)


def test_dvsgesture_loader_reads_tonic_layout(tmp_path):
    rng = np.random.default_rng(1)
    for split in ("ibmGestureTrain", "ibmGestureTest"):
        folder = tmp_path / "DVSGesture" / split / "user01_fluorescent"
        folder.mkdir(parents=True)
        for label in (0, 3, 10):
            n = 200
            events = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                               np.sort(rng.integers(0, 1000, n))], axis=1).astype(np.int64)
            np.save(folder / f"{label}.npy", events)
    splits = load_dataset("dvsgesture", tmp_path, timesteps=5)
    assert splits.input_shape == (2, 32, 32)  # the 128x128 sensor downsampled by 4
    assert splits.num_classes == 11
    assert sorted(splits.test_y.tolist()) == [0, 3, 10]
    assert splits.test_x.shape == (3, 5, 2, 32, 32) and int(splits.test_x.sum()) > 0


def make_cifar10(root, n_per_batch=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, n_per_batch)]}
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, handle)
    return folder


def test_cifar10_loader_reads_torchvision_layout(tmp_path):
    folder = make_cifar10(tmp_path)
    with open(folder / "test_batch", "rb") as handle:
        raw = pickle.load(handle)
    splits = load_dataset("cifar10", tmp_path)
    assert splits.input_shape == (3, 32, 32) and splits.num_classes == 10
    assert splits.train_x.shape[0] + splits.val_x.shape[0] == 20
    expected = torch.from_numpy(raw["data"][0].reshape(3, 32, 32)).float() / 255
    assert torch.allclose(splits.test_x[0], expected)
    assert splits.test_y.tolist() == raw["labels"]


def test_cifar100_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test"):
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": np.zeros((3, 3072), np.uint8), "fine_labels": [5, 50, 99]}, handle)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": [str(i) for i in range(100)]}, handle)
    splits = load_dataset("cifar100", tmp_path)
    assert splits.num_classes == 100 and splits.test_y.tolist() == [5, 50, 99]


@pytest.mark.parametrize("name,expected", [
    ("nmnist", "NMNIST/Train"),
    ("dvsgesture", "DVSGesture/ibmGestureTrain"),
    ("cifar10", "missing data_batch_1"),
    ("cifar100", "missing train"),
])
def test_missing_dataset_names_expected_files(tmp_path, name, expected):
    with pytest.raises(DataError, match=expected) as info:
        load_dataset(name, tmp_path)
    assert "\n" not in str(info.value)


def test_corrupt_cifar_file_is_a_one_line_error(tmp_path):
    folder = make_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot read cifar10"):
        load_dataset("cifar10", tmp_path)


def test_unknown_dataset_and_missing_folder():
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="is not a folder"):
        load_dataset("nmnist", "/no/such/folder")
