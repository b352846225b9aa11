"""Small image sets: the IDX reader/writer, Fashion-MNIST discovery and loading, the digits loader."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from hwnas.tasks.images import (
    DEBIAN_FASHION_MNIST,
    ENV_FASHION_MNIST,
    FASHION_MNIST_CLASSES,
    DatasetNotFoundError,
    IdxFileError,
    find_fashion_mnist,
    load_digits_set,
    load_fashion_mnist,
    read_idx,
    write_idx,
)


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """The IDX encoding written by hand: 0, 0, type, ndim, big-endian uint32 dims, big-endian data."""
    head = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_fake_fashion(folder: Path, n_train: int = 30, n_test: int = 20, gz: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    for name, a in arrays.items():
        data = idx_bytes(a)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


# ------------------------------------------------------------------------------------------ IDX
def test_read_handwritten_idx_images_and_labels(tmp_path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 1], dtype=np.uint8)
    (tmp_path / "img").write_bytes(idx_bytes(images))
    (tmp_path / "lab.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    assert (tmp_path / "img").read_bytes()[:4] == b"\x00\x00\x08\x03"          # 0x00000803
    assert idx_bytes(labels)[:8] == b"\x00\x00\x08\x01\x00\x00\x00\x02"        # 0x00000801, N = 2 big-endian
    got = read_idx(tmp_path / "img", ndim=3)
    assert got.dtype == np.uint8 and got.shape == (2, 3, 4) and np.array_equal(got, images)
    assert np.array_equal(read_idx(tmp_path / "lab.gz", ndim=1), labels)
    got.flags.writeable = True                                                 # a copy, not a read-only buffer


@pytest.mark.parametrize(("dtype", "code"), [(np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C),
                                             (np.float32, 0x0D), (np.float64, 0x0E)])
def test_idx_other_types_are_big_endian(tmp_path, dtype, code) -> None:
    a = (np.arange(12).reshape(3, 4) - 5).astype(dtype) * dtype(3)
    (tmp_path / "a").write_bytes(idx_bytes(a, code))
    got = read_idx(tmp_path / "a")
    assert got.dtype == np.dtype(dtype) and np.array_equal(got, a)


def test_write_idx_round_trip_and_exact_bytes(tmp_path) -> None:
    a = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    p = write_idx(tmp_path / "x-idx3-ubyte", a)
    assert p.read_bytes() == idx_bytes(a)
    pz = write_idx(tmp_path / "x-idx3-ubyte.gz", a)
    assert gzip.decompress(pz.read_bytes()) == idx_bytes(a)
    assert np.array_equal(read_idx(pz), a)
    f = np.linspace(-1, 1, 6).astype(np.float64)
    assert np.array_equal(read_idx(write_idx(tmp_path / "f", f)), f)
    with pytest.raises(ValueError, match="no IDX type"):
        write_idx(tmp_path / "b", np.zeros(3, dtype=np.int64))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "too short"),
        (b"\x01\x02\x08\x01\x00\x00\x00\x02\x00\x01", "not an IDX file"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX data type 0x07"),
        (b"\x00\x00\x08\x01\x00\x00", "header truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02\x03", "needs 5 data bytes, the file has 3"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x02\x01\x02\x03", "needs 2 data bytes, the file has 3"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01\x00\x00\x00\x01\x00", "expected 1 dimension"),
    ],
)
def test_corrupt_idx_errors_name_the_file(tmp_path, content: bytes, match: str) -> None:
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(IdxFileError, match=match) as info:
        read_idx(path, ndim=1)
    assert str(path) in str(info.value)


def test_corrupt_gzip_and_missing_file(tmp_path) -> None:
    good = gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(IdxFileError, match=r"cut\.gz: corrupt gzip stream"):
        read_idx(path)
    with pytest.raises(IdxFileError, match=r"nothing-here: cannot read IDX file"):
        read_idx(tmp_path / "nothing-here")


# --------------------------------------------------------------------------------- Fashion-MNIST
@pytest.mark.parametrize("gz", [True, False])
def test_load_fake_fashion_mnist_from_root(tmp_path, gz: bool) -> None:
    arrays = write_fake_fashion(tmp_path / "fm", gz=gz)
    d = load_fashion_mnist(root=tmp_path / "fm")
    assert d.x_train.shape == (30, 1, 28, 28) and d.x_train.dtype == np.float32
    assert d.y_train.dtype == np.int64 and d.x_test.shape == (20, 1, 28, 28) and d.x_val is None
    assert np.array_equal(d.x_train[:, 0], arrays["train-images-idx3-ubyte"] / np.float32(255))
    assert np.array_equal(d.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert d.classes == FASHION_MNIST_CLASSES and d.source == str(tmp_path / "fm")
    flat = load_fashion_mnist(root=tmp_path / "fm", flatten=True, val_fraction=0.2, seed=1)
    assert flat.x_train.shape == (20, 784) and flat.x_val.shape == (10, 784)        # 1 of the 3 per class
    assert np.array_equal(np.sort(np.r_[flat.y_train, flat.y_val]), np.sort(d.y_train))
    again = load_fashion_mnist(root=tmp_path / "fm", flatten=True, val_fraction=0.2, seed=1)
    assert np.array_equal(again.x_val, flat.x_val)


def test_env_var_points_elsewhere(tmp_path, monkeypatch) -> None:
    write_fake_fashion(tmp_path / "elsewhere")
    monkeypatch.setenv(ENV_FASHION_MNIST, str(tmp_path / "elsewhere"))
    files = find_fashion_mnist()
    assert files["y_test"] == tmp_path / "elsewhere" / "t10k-labels-idx1-ubyte.gz"
    assert load_fashion_mnist().x_test.shape == (20, 1, 28, 28)


def test_missing_files_name_the_package_and_paths(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(ENV_FASHION_MNIST, raising=False)
    with pytest.raises(DatasetNotFoundError, match="apt install dataset-fashion-mnist") as info:
        load_fashion_mnist(root=tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value) and "no such folder" in str(info.value)
    write_fake_fashion(tmp_path / "partial")
    (tmp_path / "partial" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]\)"):
        find_fashion_mnist(tmp_path / "partial")
    monkeypatch.setenv(ENV_FASHION_MNIST, str(tmp_path / "partial"))
    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        with pytest.raises(DatasetNotFoundError) as info:
            find_fashion_mnist()
        assert str(tmp_path / "partial") in str(info.value) and str(DEBIAN_FASHION_MNIST) in str(info.value)


def test_inconsistent_fashion_files(tmp_path) -> None:
    write_fake_fashion(tmp_path / "fm")
    (tmp_path / "fm" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(7, np.uint8))))
    with pytest.raises(IdxFileError, match=r"30 images but .*train-labels-idx1-ubyte\.gz has 7 labels"):
        load_fashion_mnist(root=tmp_path / "fm")
    (tmp_path / "fm" / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.full(30, 12, np.uint8))))
    with pytest.raises(IdxFileError, match="label 12 outside"):
        load_fashion_mnist(root=tmp_path / "fm")
    (tmp_path / "fm" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((30, 784)))))
    with pytest.raises(IdxFileError, match=r"train-images-idx3-ubyte\.gz: expected 3 dimension"):
        load_fashion_mnist(root=tmp_path / "fm")


def _real_fashion_root() -> Path | None:
    import os

    for folder in (os.environ.get(ENV_FASHION_MNIST), DEBIAN_FASHION_MNIST):
        if folder and (Path(folder) / "train-images-idx3-ubyte.gz").is_file():
            return Path(folder)
    return None


@pytest.mark.skipif(_real_fashion_root() is None, reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist() -> None:
    d = load_fashion_mnist(root=_real_fashion_root())
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert np.array_equal(np.bincount(d.y_train), np.full(10, 6000))
    assert np.array_equal(np.bincount(d.y_test), np.full(10, 1000))
    assert np.array_equal(d.y_train[:10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])   # the published first labels
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0


# ---------------------------------------------------------------------------------------- digits
def test_digits_set_is_seeded_stratified_and_matches_the_task() -> None:
    a, b = load_digits_set(4), load_digits_set(4)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_val, b.y_val)
    assert not np.array_equal(load_digits_set(5).y_train, a.y_train)
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (1079, 359, 359)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64 and a.x_train.shape[1] == 64
    assert a.x_train.max() == 1.0 and np.all(a.x_train * 16 == np.round(a.x_train * 16))
    for y in (a.y_train, a.y_val, a.y_test):                       # every class in every part
        assert set(np.unique(y)) == set(range(10))
    img = load_digits_set(4, image=True)
    assert img.x_test.shape == (359, 1, 8, 8) and np.array_equal(img.x_test.reshape(-1, 64), a.x_test)
    from hwnas.tasks import get_task

    task = get_task("digits").load(seed=4)
    assert np.array_equal(task.train.x.numpy(), a.x_train) and np.array_equal(task.test.y.numpy(), a.y_test)


def test_legacy_digits_loader_still_works() -> None:
    from hwnas.tasks import load_digits

    d = load_digits(seed=0)
    assert d.x_train.shape[1] == 64 and len(d.y_test) == 450
