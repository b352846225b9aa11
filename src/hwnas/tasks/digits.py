"""scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes), split with a seed."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DigitsSplit:
    """Train/test tensors: inputs scaled to [0, 1], labels as int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits(seed: int = 0, test_fraction: float = 0.25, image: bool = False) -> DigitsSplit:
    """Stratified split of the digits set; ``image=True`` gives (N, 1, 8, 8) instead of (N, 64).

    Pixel values (0–16) are divided by 16, so every input is exactly a fixed-point number with 4
    fractional bits.
    """
    from sklearn.datasets import load_digits as _sk_load
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: must be in (0, 1), got {test_fraction}")
    x, y = _sk_load(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    shape = (-1, 1, 8, 8) if image else (-1, 64)

    def _t(a):
        return torch.tensor(a / 16.0, dtype=torch.float32).reshape(shape)

    return DigitsSplit(_t(x_tr), torch.tensor(y_tr), _t(x_te), torch.tensor(y_te))
