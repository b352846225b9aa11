"""Task registry, splits, metrics and the real-file RadioML readers."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch

from hwnas.tasks import (
    RadioMLFileError,
    TaskError,
    accuracy,
    accuracy_per_snr,
    confusion_matrix,
    get_task,
    homogeneous_subset,
    most_confused,
    read_rml2016_pickle,
    read_rml2018_hdf5,
    split_per_pair,
    stratified_split,
    task_names,
)
from hwnas.tasks.radioml_files import RML2016_CLASSES, RML2018_CLASSES, rml2018_labels


def pairs(n_classes: int = 3, snrs: tuple[int, ...] = (-10, 0, 10), per: int = 20) -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat(np.arange(n_classes), len(snrs) * per)
    snr = np.tile(np.repeat(np.array(snrs), per), n_classes)
    return y, snr


# ------------------------------------------------------------------------------------------- splits
def test_split_per_pair_takes_the_fraction_of_every_pair() -> None:
    y, snr = pairs(per=20)
    train, test = split_per_pair(y, snr, test_fraction=0.1, seed=2018)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(y)
    for c in range(3):
        for s in (-10, 0, 10):
            assert ((y[test] == c) & (snr[test] == s)).sum() == 2
    again = split_per_pair(y, snr, test_fraction=0.1, seed=2018)
    assert all(np.array_equal(a, b) for a, b in zip((train, test), again, strict=True))
    other = split_per_pair(y, snr, test_fraction=0.1, seed=1)[1]
    assert not np.array_equal(other, test)


def test_homogeneous_subset_keeps_the_class_snr_distribution() -> None:
    y, snr = pairs(per=40)
    idx = homogeneous_subset(y, snr, fraction=0.1, seed=0)
    counts = {(c, s): int(((y[idx] == c) & (snr[idx] == s)).sum()) for c in range(3) for s in (-10, 0, 10)}
    assert set(counts.values()) == {4}
    with pytest.raises(ValueError, match="fraction"):
        homogeneous_subset(y, snr, fraction=1.5)


def test_stratified_split_orders_parts_and_covers_everything() -> None:
    y = np.repeat(np.arange(4), 50)
    val, test, train = stratified_split(y, (0.1, 0.2), seed=3)
    assert [np.bincount(y[p]).tolist() for p in (val, test, train)] == [[5] * 4, [10] * 4, [35] * 4]
    assert np.array_equal(np.sort(np.concatenate([val, test, train])), np.arange(200))
    with pytest.raises(ValueError, match="fractions"):
        stratified_split(y, (0.6, 0.5))
    with pytest.raises(ValueError, match="snr"):
        stratified_split(y, (0.1,), snr=np.zeros(3))


# ------------------------------------------------------------------------------------------ metrics
def test_metrics_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    assert accuracy(p, y) == pytest.approx(4 / 6)
    logits = torch.nn.functional.one_hot(torch.tensor(p), 3).float()
    assert accuracy(logits, torch.tensor(y)) == pytest.approx(4 / 6)
    assert accuracy_per_snr(p, y, [-2, -2, -2, 4, 4, 4]) == {-2: pytest.approx(2 / 3), 4: pytest.approx(2 / 3)}
    cm = confusion_matrix(p, y, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    top = most_confused(cm, ("a", "b", "c"), k=1)[0]
    assert top[:2] == ("a", "b") or top[:2] == ("a", "c")
    assert top[2] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="labels"):
        accuracy(p, y[:3])


# ------------------------------------------------------------------------------------------ readers
def write_rml2018(path, n_per: int = 2, snrs: tuple[int, ...] = (-20, 0, 30), length: int = 1024,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cls = np.repeat(np.arange(24), len(snrs) * n_per)
    snr = np.tile(np.repeat(np.array(snrs), n_per), 24)
    x = rng.standard_normal((len(cls), length, 2)).astype(np.float32)
    x[:, 0, 0] = cls  # mark frames so reordering is visible
    y = np.eye(24, dtype=np.int64)[cls]
    with h5py.File(path, "w") as f:
        f["X"], f["Y"], f["Z"] = x, y, snr[:, None].astype(np.int64)
    return x, cls, snr


def test_rml2018_reader_reads_the_exact_format(tmp_path) -> None:
    path = tmp_path / "GOLD_XYZ_OSC.0001_1024.hdf5"
    x, cls, snr = write_rml2018(path)
    data = read_rml2018_hdf5(path)
    assert data.x.shape == (len(cls), 2, 1024) and data.x.dtype == np.float32
    assert np.array_equal(data.x, x.transpose(0, 2, 1))
    assert np.array_equal(data.y, cls) and np.array_equal(data.snr, snr)
    assert data.classes == RML2018_CLASSES and data.classes[12] == "16QAM" and data.classes[-1] == "OQPSK"
    idx = np.array([100, 3, 50, 3])
    part = read_rml2018_hdf5(path, indices=idx)
    assert np.array_equal(part.x, x[idx].transpose(0, 2, 1)) and np.array_equal(part.y, cls[idx])
    y2, snr2 = rml2018_labels(path)
    assert np.array_equal(y2, cls) and np.array_equal(snr2, snr)


def test_rml2018_reader_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(RadioMLFileError, match=r"missing.hdf5: file not found"):
        read_rml2018_hdf5(tmp_path / "missing.hdf5")
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(RadioMLFileError, match=r"bad.hdf5: not an HDF5 file"):
        read_rml2018_hdf5(bad)
    nox = tmp_path / "nox.hdf5"
    with h5py.File(nox, "w") as f:
        f["Y"], f["Z"] = np.eye(24)[:2], np.zeros((2, 1))
    with pytest.raises(RadioMLFileError, match=r"nox.hdf5: dataset 'X' missing"):
        read_rml2018_hdf5(nox)
    noonehot = tmp_path / "y.hdf5"
    with h5py.File(noonehot, "w") as f:
        f["X"], f["Y"], f["Z"] = np.zeros((2, 1024, 2)), np.full((2, 24), 0.5), np.zeros((2, 1))
    with pytest.raises(RadioMLFileError, match="'Y' is not one-hot"):
        read_rml2018_hdf5(noonehot)


def write_rml2016(path, per: int = 3, snrs: tuple[int, ...] = (-20, 18), as_bytes: bool = True) -> dict:
    rng = np.random.default_rng(1)
    names = ["8PSK", "AM-DSB", "AM-SSB", "BPSK", "CPFSK", "GFSK", "PAM4", "QAM16", "QAM64", "QPSK", "WBFM"]
    d = {}
    for m in names:
        for s in snrs:
            d[(m.encode() if as_bytes else m, s)] = rng.standard_normal((per, 2, 128)).astype(np.float32)
    with open(path, "wb") as fh:
        pickle.dump(d, fh, protocol=2)
    return d


def test_rml2016_reader_relabels_in_class_order(tmp_path) -> None:
    path = tmp_path / "RML2016.10a_dict.pkl"
    d = write_rml2016(path)
    data = read_rml2016_pickle(path)
    assert data.x.shape == (11 * 2 * 3, 2, 128) and data.classes == RML2016_CLASSES
    assert np.bincount(data.y).tolist() == [6] * 11
    qam64 = RML2016_CLASSES.index("QAM64")
    sel = (data.y == qam64) & (data.snr == 18)
    assert np.array_equal(data.x[sel], d[(b"QAM64", 18)])
    write_rml2016(path, as_bytes=False)
    assert np.array_equal(read_rml2016_pickle(path).x, data.x)


def test_rml2016_reader_rejects_bad_and_malicious_files(tmp_path) -> None:
    path = tmp_path / "x.pkl"
    with open(path, "wb") as fh:
        pickle.dump({("FOO", 0): np.zeros((1, 2, 128))}, fh)
    with pytest.raises(RadioMLFileError, match="unknown modulation 'FOO'"):
        read_rml2016_pickle(path)
    with open(path, "wb") as fh:
        pickle.dump({("BPSK", 0): np.zeros((1, 128))}, fh)
    with pytest.raises(RadioMLFileError, match=r"x.pkl: frames for .* have shape \(1, 128\)"):
        read_rml2016_pickle(path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(path, "wb") as fh:
        pickle.dump({("BPSK", 0): Evil()}, fh)
    with pytest.raises(RadioMLFileError, match=r"builtins.print is not allowed"):
        read_rml2016_pickle(path)


# ----------------------------------------------------------------------------------------- registry
def test_registry_lists_and_rejects() -> None:
    names = task_names()
    for n in ("digits", "digits-image", "fashion-mnist", "amc-rml2016", "amc-rml2018", "radioml2016",
              "radioml2018", "qubit-readout"):
        assert n in names
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        get_task("nope")
    with pytest.raises(TaskError, match=r"unknown option\(s\) \['epochs'\]"):
        get_task("digits").load(seed=0, epochs=3)
    with pytest.raises(TaskError, match="option 'path' is required"):
        get_task("radioml2018").load(seed=0)
    with pytest.raises(TaskError, match="seed must be an int"):
        get_task("digits").load(seed="0")


def test_digits_task_is_seeded_and_trains() -> None:
    from hwnas.train import TrainConfig, Trainer

    task = get_task("digits")
    a, b = task.load(seed=4), task.load(seed=4)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(task.load(seed=5).train.y, a.train.y)
    assert (len(a.train), len(a.val), len(a.test)) == (1079, 359, 359) and a.input_shape == (64,)
    torch.manual_seed(0)
    model = task.baseline(a)
    Trainer(model, TrainConfig(epochs=15, batch_size=64, lr=3e-3, seed=0, progress=False)).fit(a.train.pair)
    result = task.evaluate(model, a.test, classes=a.classes)
    assert result["accuracy"] > 0.85 and result["confusion"].sum() == len(a.test)
    img = get_task("digits-image").load(seed=4)
    assert img.input_shape == (1, 8, 8) and torch.equal(img.train.x.reshape(-1, 64), a.train.x)


def test_radioml2018_task_subset_and_splits(tmp_path) -> None:
    path = tmp_path / "rml.hdf5"
    write_rml2018(path, n_per=20, snrs=(-20, 0, 30), length=128)
    # the reader accepts any frame length; the task keeps the file's
    task = get_task("radioml2018")
    data = task.load(seed=0, path=str(path), subset_fraction=0.5)
    total = len(data.train) + len(data.val) + len(data.test)
    assert total == 24 * 3 * 10
    assert len(data.test) == 24 * 3 * 1 and data.test.snr is not None
    assert set(np.unique(data.test.snr)) == {-20, 0, 30}
    again = task.load(seed=0, path=str(path), subset_fraction=0.5)
    assert torch.equal(again.train.x, data.train.x)


def test_fidelity_metric() -> None:
    task = get_task("qubit-readout")
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0, 0, 0, 1, 1, 1, 0, 0])
    assert task.score(p, y) == pytest.approx(1 - (0.25 + 0.5) / 2)
    with pytest.raises(ValueError, match="binary"):
        task.score(p, y + 1)


def test_qubit_readout_task_windows_and_matched_filter() -> None:
    from hwnas.tasks.qubit import MatchedFilter

    task = get_task("qubit-readout")
    data = task.load(seed=1, n_shots=3000, window_start=50, window_size=200)
    assert data.input_shape == (400,) and data.classes == ("g", "e")
    assert abs(int(data.train.y.sum()) - len(data.train) // 2) <= 1
    assert torch.equal(task.load(seed=1, n_shots=3000, window_start=50, window_size=200).test.x, data.test.x)
    mf = MatchedFilter().fit(data.train.x.numpy(), data.train.y.numpy())
    assert 0.8 < task.score(mf.predict(data.test.x.numpy()), data.test.y) <= 1.0
    assert task.baseline(data)(data.test.x[:3]).shape == (3, 2)
    with pytest.raises(ValueError, match=r"start|size"):
        task.load(seed=1, n_shots=100, window_start=700, window_size=200)


def test_fashion_mnist_task_or_a_clear_error(tmp_path, monkeypatch) -> None:
    from hwnas.tasks.images import DatasetNotFoundError, find_fashion_mnist

    monkeypatch.delenv("HWNAS_FASHION_MNIST", raising=False)
    task = get_task("fashion-mnist")
    try:
        find_fashion_mnist(None)
    except DatasetNotFoundError:
        with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist"):
            task.load(seed=0)
        return
    data = task.load(seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (54000, 6000, 10000)
    assert data.input_shape == (1, 28, 28) and len(data.classes) == 10
    assert float(data.train.x.max()) <= 1.0 and float(data.train.x.min()) >= 0.0


def test_cli_lists_tasks_and_generates_amc(tmp_path, capsys) -> None:
    from hwnas.cli import main

    assert main(["tasks"]) == 0
    assert "qubit-readout" in capsys.readouterr().out
    assert main(["tasks", "amc-rml2018"]) == 0
    assert "per_pair" in capsys.readouterr().out
    assert main(["tasks", "nope"]) == 2
    assert main(["generate-amc", "--per-pair", "2", "--data-dir", str(tmp_path), "--quiet", "--workers", "1"]) == 0
    assert "440 frames of 'rml2016'" in capsys.readouterr().out
    (folder,) = tmp_path.iterdir()
    assert (folder / "manifest.json").is_file() and (folder / "x.npy").is_file()
    assert main(["generate-amc", "--per-pair", "0", "--data-dir", str(tmp_path), "--quiet"]) == 2
    assert "per_pair" in capsys.readouterr().err


def test_a_task_whose_split_comes_out_empty_is_an_error_naming_it():
    from hwnas.tasks import TaskError, get_task

    task = get_task("amc-rml2016")
    with pytest.raises(TaskError, match=r"amc-rml2016.*val.* empty with options .*'per_pair': 2"):
        task.load(seed=0, per_pair=2, snrs=[0, 2], progress=False)
