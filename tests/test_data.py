import pickle

import numpy as np
import pytest
import torch

from conftest import write_aedat4_file, write_nmnist_file

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


def test_pokerdvs_loader_reads_tonic_layout(tmp_path):
    rng = np.random.default_rng(2)
    for split in ("pips_train", "pips_test"):
        for suit, x in (("cl", 3), ("he", 12), ("di", 20), ("sp", 30)):
            folder = tmp_path / "POKERDVS" / split / suit
            folder.mkdir(parents=True)
            for number in range(3):
                times = np.sort(rng.integers(0, 10_000, 40))
                events = np.stack([times, np.full(40, x), rng.integers(0, 35, 40), np.ones(40, int)], axis=1)
                np.save(folder / f"{suit}{number}.npy", events)  # rows of t, x, y, p
    splits = load_dataset("pokerdvs", tmp_path, timesteps=4)
    assert splits.kind == "frames" and splits.input_shape == (2, 35, 35) and splits.num_classes == 4
    assert splits.test_x.shape == (12, 4, 2, 35, 35)
    for frames, label in zip(splits.test_x, splits.test_y.tolist()):
        column = (3, 12, 20, 30)[label]  # tonic's classes, in order: cl, he, di, sp
        assert int(frames[:, 1, :, column].sum()) > 0 and int(frames.sum()) == int(frames[:, 1, :, column].sum())


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


def write_idx(path, array):
    """An uncompressed IDX file (MNIST's format): magic with the uint8 type and rank, big-endian sizes, data."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + array.tobytes())


def make_idx_dataset(root, folder, prefixes=("train", "t10k"), classes=10, sizes=(30, 12)):
    """Random images and labels in torchvision's MNIST-family layout; returns the test images and labels."""
    rng = np.random.default_rng(1)
    written = {}
    for prefix, size in zip(prefixes, sizes):
        images = rng.integers(0, 256, (size, 28, 28), dtype=np.uint8)
        labels = np.arange(size) % classes
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
        written[prefix] = (images, labels)
    return written[prefixes[1]]


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_mnist_family_reads_idx_files_in_torchvision_layout(tmp_path, name, folder):
    images, labels = make_idx_dataset(tmp_path, folder)
    splits = load_dataset(name, tmp_path, seed=3)
    assert splits.kind == "static" and splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert splits.train_x.shape[0] == 27 and splits.val_x.shape[0] == 3  # 10% of 30 validates
    assert torch.equal(splits.test_x[:, 0], torch.from_numpy(images).float() / 255)
    assert splits.test_y.tolist() == labels.tolist()
    capped = load_dataset(name, tmp_path, max_samples=5)
    assert capped.test_x.shape[0] == 5 and capped.train_x.shape[0] + capped.val_x.shape[0] == 5


def test_emnist_reads_the_balanced_split_with_47_classes(tmp_path):
    _, labels = make_idx_dataset(tmp_path, "EMNIST", ("emnist-balanced-train", "emnist-balanced-test"), classes=47,
                                 sizes=(60, 50))
    splits = load_dataset("emnist", tmp_path)
    assert splits.num_classes == 47 and splits.test_y.tolist() == labels.tolist()


def test_svhn_reads_mat_files(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(2)
    for split, size in (("train", 12), ("test", 6)):
        images = rng.integers(0, 256, (32, 32, 3, size), dtype=np.uint8)
        labels = (np.arange(size) % 10 + 1).reshape(-1, 1)  # SVHN's files label the digit 0 as 10
        scipy_io.savemat(tmp_path / f"{split}_32x32.mat", {"X": images, "y": labels})
    splits = load_dataset("svhn", tmp_path)
    assert splits.input_shape == (3, 32, 32) and splits.num_classes == 10
    assert splits.test_y.tolist() == [1, 2, 3, 4, 5, 6]
    assert torch.equal(splits.test_x[0], torch.from_numpy(images[..., 0]).permute(2, 0, 1).float() / 255)


def make_ncaltech101(root, per_class=10, categories=("BACKGROUND_Google", "accordion", "airplanes")):
    """N-Caltech101's layout: a folder per category of 40-bit event files, recordings of different sizes (one
    larger than the 240x180 frame); each category's recordings hold a burst of ON events at its own row."""
    rng = np.random.default_rng(1)
    for c, category in enumerate(categories):
        folder = root / "NCALTECH101" / "Caltech101" / category
        folder.mkdir(parents=True)
        for k in range(per_class):
            width, height = (255, 200) if k == 0 else (int(rng.integers(100, 240)), int(rng.integers(80, 180)))
            ts = np.sort(rng.integers(0, 300_000, 80))
            events = [(int(rng.integers(0, width)), int(rng.integers(0, height)), int(rng.integers(0, 2)), int(t))
                      for t in ts]
            events += [(0, 0, 0, 0)] + [(4 * x, 40 * c + 20, 1, 100_000 + x) for x in range(40)]
            events.sort(key=lambda e: e[3])
            write_nmnist_file(folder / f"image_{k:04d}.bin", events)


def test_ncaltech101_reads_its_category_folders_and_draws_a_test_split(tmp_path):
    make_ncaltech101(tmp_path)
    splits = load_dataset("ncaltech101", tmp_path, timesteps=4)
    assert splits.kind == "frames" and splits.input_shape == (2, 45, 60)  # 240x180 downsampled by 4
    assert splits.num_classes == 3
    assert (splits.train_x.shape[0], splits.val_x.shape[0], splits.test_x.shape[0]) == (21, 3, 6)
    for x, y in ((splits.train_x, splits.train_y), (splits.test_x, splits.test_y)):
        for frames, label in zip(x, y.tolist()):  # the category's burst: ON events on row (40 c + 20) / 4
            assert int(frames[:, 1, (40 * label + 20) // 4].sum()) >= 10
    again = load_dataset("ncaltech101", tmp_path, timesteps=4)
    assert torch.equal(again.test_x, splits.test_x) and torch.equal(again.train_y, splits.train_y)
    # the same files written in another order (another file system's listing) give the same splits
    moved = tmp_path / "reversed"
    make_ncaltech101(moved)
    for folder in sorted((moved / "NCALTECH101" / "Caltech101").iterdir()):
        files = sorted(folder.iterdir(), reverse=True)
        contents = [f.read_bytes() for f in files]
        for f in files:
            f.unlink()
        for f, data in zip(files, contents):
            f.write_bytes(data)
    assert torch.equal(load_dataset("ncaltech101", moved, timesteps=4).test_x, splits.test_x)
    other = load_dataset("ncaltech101", tmp_path, timesteps=4, seed=1)
    assert not torch.equal(other.test_y, splits.test_y) or not torch.equal(other.test_x, splits.test_x)


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def make_cifar10dvs(root, per_class=10, classes=("airplane", "cat", "truck")):
    """CIFAR10-DVS's layout as tonic unpacks it: a folder per class of AEDAT 4.0 recordings of a 128x128 DVS; each
    class's recordings hold a burst of ON events on its own row (its index among the ten classes x 10 + 5)."""
    rng = np.random.default_rng(3)
    for name in classes:
        row = 10 * CIFAR10_CLASSES.index(name) + 5
        folder = root / "CIFAR10DVS" / name
        folder.mkdir(parents=True)
        for k in range(per_class):
            noise = [(int(t), int(rng.integers(0, 128)), int(rng.integers(0, 128)), int(rng.integers(0, 2)))
                     for t in rng.integers(0, 1_000_000, 60)]
            burst = [(400_000 + x, 4 * x, row, 1) for x in range(32)]
            write_aedat4_file(folder / f"cifar10_{name}_{k}.aedat4", sorted(noise + burst))


def test_cifar10dvs_reads_aedat4_class_folders_and_draws_a_test_split(tmp_path):
    make_cifar10dvs(tmp_path)
    splits = load_dataset("cifar10dvs", tmp_path, timesteps=4)
    assert splits.kind == "frames" and splits.input_shape == (2, 32, 32)  # 128x128 downsampled by 4
    assert splits.num_classes == 10  # tonic's numbering of the ten classes, whichever folders are present
    # 10% of each class tests (one recording of each), 10% of the other 27 validate
    assert (splits.train_x.shape[0], splits.val_x.shape[0], splits.test_x.shape[0]) == (24, 3, 3)
    assert sorted(splits.test_y.tolist()) == [0, 3, 9]
    assert sorted(set(splits.train_y.tolist())) == [0, 3, 9]
    for x, y in ((splits.train_x, splits.train_y), (splits.test_x, splits.test_y)):
        for frames, label in zip(x, y.tolist()):  # the class's burst: ON events on row (10 label + 5) / 4
            assert int(frames[:, 1, (10 * label + 5) // 4].sum()) >= 8
    capped = load_dataset("cifar10dvs", tmp_path, timesteps=4, max_samples=2)  # the cap leaves the draw alone
    assert capped.train_x.shape[0] == 2 and torch.equal(capped.test_x, splits.test_x[:2])
    other = load_dataset("cifar10dvs", tmp_path, timesteps=4, seed=1)
    assert sorted(other.test_y.tolist()) == [0, 3, 9] and not torch.equal(other.test_x, splits.test_x)


def test_cifar10dvs_recording_without_events_reads_as_silent_frames(tmp_path):
    make_cifar10dvs(tmp_path)
    write_aedat4_file(tmp_path / "CIFAR10DVS" / "cat" / "cifar10_cat_0.aedat4", [])  # first in path order
    splits = load_dataset("cifar10dvs", tmp_path, timesteps=4)
    everything = torch.cat([splits.train_x, splits.val_x, splits.test_x])
    assert everything.shape[1:] == (4, 2, 32, 32)
    assert int((everything.flatten(1).sum(1) == 0).sum()) == 1


def test_cifar10dvs_bad_files_and_folders_are_one_line_errors(tmp_path):
    make_cifar10dvs(tmp_path, per_class=3)
    (tmp_path / "CIFAR10DVS" / "cat" / "cifar10_cat_1.aedat4").write_bytes(b"#!AER-DAT3.1\r\n")
    with pytest.raises(DataError, match=r"cannot read .*cifar10_cat_1.aedat4: .*magic number") as info:
        load_dataset("cifar10dvs", tmp_path, timesteps=4)
    assert "\n" not in str(info.value)
    (tmp_path / "CIFAR10DVS" / "cat" / "cifar10_cat_1.aedat4").unlink()
    (tmp_path / "CIFAR10DVS" / "kitten").mkdir()
    write_aedat4_file(tmp_path / "CIFAR10DVS" / "kitten" / "0.aedat4", [(0, 1, 1, 1)])
    with pytest.raises(DataError, match=r"in a folder 'kitten': their folder must be one of CIFAR10-DVS's classes "
                                        r"\(airplane, "):
        load_dataset("cifar10dvs", tmp_path, timesteps=4)
    (tmp_path / "CIFAR10DVS" / "kitten" / "0.aedat4").rename(tmp_path / "CIFAR10DVS" / "0.aedat4")
    with pytest.raises(DataError, match=r"holds .aedat4 files in no class folder"):
        load_dataset("cifar10dvs", tmp_path, timesteps=4)


def test_labels_outside_the_dataset_classes_are_a_one_line_error(tmp_path):
    make_idx_dataset(tmp_path, "MNIST", classes=12)
    with pytest.raises(DataError, match=r"labels span 0..11, expected 0..9"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("name,expected", [
    ("mnist", "missing MNIST/raw/train-images-idx3-ubyte .*tools/fetch-mnist"),
    ("svhn", "missing train_32x32.mat"),
    ("nmnist", "NMNIST/Train"),
    ("dvsgesture", "DVSGesture/ibmGestureTrain"),
    ("pokerdvs", "POKERDVS/pips_train"),
    ("ncaltech101", "NCALTECH101/Caltech101"),
    ("cifar10dvs", "CIFAR10DVS: expected <class>/\\*.aedat4"),
    ("cifar10", "missing cifar-10-batches-py/data_batch_1"),
    ("cifar100", "missing cifar-100-python/train"),
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
    with pytest.raises(DataError, match="unknown dataset 'mnist3d'"):
        load_dataset("mnist3d")
    with pytest.raises(DataError, match="dataset 'mnist' needs --data-dir"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="is not a folder"):
        load_dataset("nmnist", "/no/such/folder")


def test_balanced_subset_draws_every_class_evenly_and_is_seeded():
    from hwnas.data.splits import balanced_subset

    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 3)  # sorted by class, as N-MNIST's test folder is read
    chosen = balanced_subset(labels, 12, seed=0)
    assert chosen.tolist() == sorted(chosen.tolist()) and len(set(chosen.tolist())) == 12
    assert torch.bincount(labels[chosen], minlength=3).tolist() == [5, 4, 3]  # class 2 has only 3
    assert torch.equal(chosen, balanced_subset(labels, 12, seed=0))
    assert not torch.equal(chosen, balanced_subset(labels, 12, seed=1))
    assert torch.equal(balanced_subset(labels, 100, seed=0), torch.arange(83))


def test_strictly_correct_counts_ties_and_silence_as_wrong():
    from hwnas.data.splits import strictly_correct

    scores = torch.tensor([[0.0, 0.0, 0.0], [1.0, 3.0, 3.0], [0.5, 2.0, 1.0], [4.0, 1.0, 1.0]])
    assert strictly_correct(scores, torch.tensor([0, 1, 1, 0])).tolist() == [False, False, True, True]
