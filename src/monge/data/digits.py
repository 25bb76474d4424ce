"""scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn, no download).

Source: the UCI "Optical Recognition of Handwritten Digits" test set (Alpaydin & Kaynak, 1998),
as bundled by ``sklearn.datasets.load_digits``. Pixel values are integers 0..16.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

__all__ = ["DIGITS_NUM_CLASSES", "DIGITS_SHAPE", "load_digits"]

DIGITS_SHAPE = (1, 8, 8)
DIGITS_NUM_CLASSES = 10


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)
    labels = np.asarray(bunch.target, dtype=np.int64)
    return images, labels


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Load the 8x8 digits as images ``[1797, 1, 8, 8]`` in ``[-1, 1]`` and labels ``[1797]``.

    Pixel ``v`` in ``0..16`` maps to ``v / 16 * 2 - 1``. The order is scikit-learn's; use
    :func:`monge.data.load_dataset` (``"digits"``) for a seeded train/test split.

    Returns:
        ``(images, labels)``: float32 ``[1797, 1, 8, 8]`` and int64 ``[1797]`` with values
        ``0..9``. Fresh tensors on every call (safe to modify).
    """
    images, labels = _digits_arrays()
    x = torch.from_numpy((images / 16.0 * 2.0 - 1.0).astype(np.float32))[:, None]
    return x.contiguous(), torch.from_numpy(labels.copy())
