"""Small image sets as NumPy arrays: scikit-learn's 8×8 digits and Fashion-MNIST from Debian's IDX files.

* :func:`load_digits_set` — the bundled digits, stratified train/val/test split with a seed (the same split as
  the ``digits`` task).
* :func:`load_fashion_mnist` — Fashion-MNIST (60,000 train / 10,000 test 28×28 images) from the IDX files of
  Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``), or from ``root`` /
  ``$HWNAS_FASHION_MNIST``. Nothing is downloaded.
* :func:`read_idx` / :func:`write_idx` — the IDX format (plain or gzipped): 2 zero bytes, a type byte (0x08
  unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of
  dimensions, one big-endian uint32 per dimension, then the data (big-endian, C order). Images are
  ``0x00000803`` (N, rows, cols), labels ``0x00000801`` (N,).

Inputs are float32 (pixels scaled to [0, 1]), labels int64.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwnas.errors import HwnasError

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "ENV_FASHION_MNIST",
    "FASHION_MNIST_CLASSES",
    "DatasetNotFoundError",
    "IdxFileError",
    "ImageSet",
    "find_fashion_mnist",
    "load_digits_set",
    "load_fashion_mnist",
    "read_idx",
    "write_idx",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the IDX files."""

ENV_FASHION_MNIST = "HWNAS_FASHION_MNIST"
"""Environment variable naming a folder with the Fashion-MNIST IDX files (searched before Debian's folder)."""

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")

_FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class IdxFileError(HwnasError, ValueError):
    """A missing or malformed IDX file (the message names the file and what is wrong)."""


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are not installed (the message names the folders searched and how to install them)."""


@dataclass(frozen=True)
class ImageSet:
    """An image data set as arrays: inputs float32 ``(N, C, H, W)`` (or ``(N, C·H·W)``), labels int64.

    ``x_val``/``y_val`` are ``None`` where the set has no validation split. ``source`` says where the data
    came from (a folder or a module).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    source: str
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


# ------------------------------------------------------------------------------------------------ IDX
def read_idx(path: str | os.PathLike[str], *, ndim: int | None = None) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip-compressed or not, detected from the content).

    ``ndim`` checks the number of dimensions (3 for images, 1 for labels). Any problem (missing file,
    bad magic number, truncated or oversized data, corrupt gzip stream) is an :class:`IdxFileError` naming
    the file. Byte data comes back as uint8; other types in native byte order.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IdxFileError(f"{path}: cannot read IDX file ({exc.strerror or exc})") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise IdxFileError(f"{path}: corrupt gzip stream ({exc})") from exc
    if len(raw) < 4:
        raise IdxFileError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise IdxFileError(f"{path}: not an IDX file (magic number 0x{raw[:4].hex()} does not start with 0x0000)")
    code, dims = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise IdxFileError(f"{path}: unknown IDX data type 0x{code:02x} (magic number 0x{raw[:4].hex()})")
    if ndim is not None and dims != ndim:
        raise IdxFileError(f"{path}: expected {ndim} dimension(s) (magic 0x0000{code:02x}{ndim:02x}), "
                           f"the file has {dims} (magic 0x{raw[:4].hex()})")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise IdxFileError(f"{path}: header truncated ({len(raw)} bytes, {dims} dimensions need {header})")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=dims, offset=4))
    dtype = _IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise IdxFileError(f"{path}: shape {shape} of {dtype.name} needs {expected} data bytes, "
                           f"the file has {len(raw) - header}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed where ``path`` ends in ``.gz``); returns the path.

    The dtype must be one IDX knows (uint8, int8, int16, int32, float32, float64).
    """
    a = np.asarray(array)
    code = next((c for c, t in _IDX_TYPES.items() if t.newbyteorder("=") == a.dtype.newbyteorder("=")), None)
    if code is None:
        raise ValueError(f"array: dtype {a.dtype} has no IDX type; use uint8, int8, int16, int32, float32, float64")
    if not 1 <= a.ndim <= 255:
        raise ValueError(f"array: IDX stores 1 to 255 dimensions, got {a.ndim}")
    body = (bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, dtype=">u4").tobytes()
            + np.ascontiguousarray(a, dtype=_IDX_TYPES[code]).tobytes())
    path = Path(path)
    path.write_bytes(gzip.compress(body, mtime=0) if path.suffix == ".gz" else body)
    return path


# ------------------------------------------------------------------------------------------- digits
def load_digits_set(seed: int = 0, *, val_fraction: float = 0.2, test_fraction: float = 0.2,
                    image: bool = False) -> ImageSet:
    """scikit-learn's 8×8 digits (1,797 images), stratified train/val/test split with ``seed``.

    Pixels (0–16) are divided by 16 (exact with 4 fractional bits); ``image=True`` gives ``(N, 1, 8, 8)``
    instead of ``(N, 64)``. The split is the one of the ``digits`` task (:func:`hwnas.tasks.stratified_split`
    with ``(val_fraction, test_fraction)``).
    """
    from sklearn.datasets import load_digits

    from .splits import stratified_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    y = y.astype(np.int64)
    if image:
        x = x.reshape(-1, 1, 8, 8)
    val, test, train = stratified_split(y, (val_fraction, test_fraction), seed=seed)
    return ImageSet(x[train], y[train], x[test], y[test], tuple(str(d) for d in range(10)),
                    "sklearn.datasets.load_digits", x[val], y[val])


# ------------------------------------------------------------------------------------ Fashion-MNIST
def _candidates(root: str | os.PathLike[str] | None) -> list[Path]:
    if root is not None:
        return [Path(root)]
    env = os.environ.get(ENV_FASHION_MNIST)
    return ([Path(env)] if env else []) + [DEBIAN_FASHION_MNIST]


def _file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def find_fashion_mnist(root: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Paths of the four Fashion-MNIST IDX files (keys ``x_train``, ``y_train``, ``x_test``, ``y_test``).

    Searches ``root`` if given, else ``$HWNAS_FASHION_MNIST`` (if set) and then Debian's
    ``/usr/share/datasets/fashion-mnist``; file names as in the original release, gzipped or not. Where no
    folder has all four files, a :class:`DatasetNotFoundError` names the folders searched, the missing files and
    the Debian package to install.
    """
    searched = []
    for folder in _candidates(root):
        if not folder.is_dir():
            searched.append(f"{folder} (no such folder)")
            continue
        found = {key: _file(folder, stem) for key, stem in _FASHION_FILES.items()}
        if all(found.values()):
            return {k: v for k, v in found.items() if v is not None}
        missing = [stem + "[.gz]" for key, stem in _FASHION_FILES.items() if found[key] is None]
        searched.append(f"{folder} (missing {', '.join(missing)})")
    raise DatasetNotFoundError(
        "Fashion-MNIST not found; install Debian's package (`apt install dataset-fashion-mnist`, files in "
        f"{DEBIAN_FASHION_MNIST}) or pass root= / set ${ENV_FASHION_MNIST} to a folder with the IDX files. "
        f"Searched: {'; '.join(searched)}")


def load_fashion_mnist(root: str | os.PathLike[str] | None = None, *, flatten: bool = False,
                       val_fraction: float | None = None, seed: int = 0) -> ImageSet:
    """Fashion-MNIST: the official 60,000 training and 10,000 test images, pixels/255 as float32.

    Inputs are ``(N, 1, 28, 28)`` (``flatten=True``: ``(N, 784)``), labels int64 0–9 (:data:`FASHION_MNIST_CLASSES`).
    ``val_fraction`` moves that share of every class of the training set to ``x_val``/``y_val`` (seeded). Files
    are found by :func:`find_fashion_mnist`; a malformed file or inconsistent counts raise :class:`IdxFileError`.
    """
    files = find_fashion_mnist(root)
    arrays = {}
    for key, path in files.items():
        a = read_idx(path, ndim=3 if key.startswith("x") else 1)
        if a.dtype != np.uint8:
            raise IdxFileError(f"{path}: expected unsigned-byte data (type 0x08), got {a.dtype}")
        arrays[key] = a
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if len(x) != len(y):
            raise IdxFileError(f"{files[f'x_{part}']}: {len(x)} images but {files[f'y_{part}']} has {len(y)} labels")
        if int(y.max(initial=0)) >= len(FASHION_MNIST_CLASSES):
            raise IdxFileError(f"{files[f'y_{part}']}: label {int(y.max())} outside 0–9")

    def _x(a: np.ndarray) -> np.ndarray:
        out = (a.astype(np.float32) / np.float32(255.0))[:, None]
        return out.reshape(len(a), -1) if flatten else out

    x_tr, y_tr = _x(arrays["x_train"]), arrays["y_train"].astype(np.int64)
    x_te, y_te = _x(arrays["x_test"]), arrays["y_test"].astype(np.int64)
    source = str(files["x_train"].parent)
    if val_fraction is None:
        return ImageSet(x_tr, y_tr, x_te, y_te, FASHION_MNIST_CLASSES, source)
    from .splits import stratified_split

    val, train = stratified_split(y_tr, (val_fraction,), seed=seed)
    return ImageSet(x_tr[train], y_tr[train], x_te, y_te, FASHION_MNIST_CLASSES, source, x_tr[val], y_tr[val])
