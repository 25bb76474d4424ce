"""One entry point for every data source: ``load_dataset(spec)`` -> :class:`Dataset`.

``spec`` is a built-in name (a 2-D toy from :mod:`monge.data.toys`, or ``"digits"``) or a path
to a ``.npy``/``.npz``/``.csv`` file or a folder of PNG images. Toys are drawn fresh (train and
test are independent draws); finite data sets (files, digits) are split by a seeded random
permutation, so a file sorted by class still gives every class to both sides.

Example:
    >>> ds = load_dataset("8gaussians", n_train=1000, n_test=200, seed=0)
    >>> ds.train.shape, ds.test.shape
    (torch.Size([1000, 2]), torch.Size([200, 2]))
    >>> import torch
    >>> x, y = ds.sample(64, torch.Generator().manual_seed(1))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from monge.data.digits import DIGITS_NUM_CLASSES, load_digits
from monge.data.files import (
    ARRAY_EXTENSIONS,
    IMAGE_EXTENSIONS,
    load_image_folder,
    load_labeled_array,
)
from monge.data.toys import TOY_DATASETS, TOY_NUM_CLASSES, gaussian
from monge.errors import DataError, InputError

__all__ = ["DATASET_NAMES", "Dataset", "load_dataset"]

PROCEDURAL_NAMES: tuple[str, ...] = ("shapes16", "sprites16", "scenes16")
"""Procedural image sets rendered exactly from known factors (:mod:`monge.data.procedural`)."""
DATASET_NAMES: tuple[str, ...] = (*TOY_DATASETS, "digits", *PROCEDURAL_NAMES)
"""Built-in data set names accepted by :func:`load_dataset`."""


@dataclass
class Dataset:
    """A data set with a held-out test split.

    Attributes:
        name: the spec it was loaded from (built-in name or path).
        train: training samples ``[N_train, *shape]``.
        test: held-out samples ``[N_test, *shape]``; never used for training.
        train_labels: int64 ``[N_train]`` class labels, or ``None``.
        test_labels: int64 ``[N_test]`` class labels, or ``None``.
        num_classes: number of classes (labels lie in ``0..num_classes-1``), or ``None``.
    """

    name: str
    train: Tensor
    test: Tensor
    train_labels: Tensor | None
    test_labels: Tensor | None
    num_classes: int | None

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-sample shape, e.g. ``(2,)`` for toys or ``(1, 8, 8)`` for digits."""
        return tuple(self.train.shape[1:])

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        """Draw ``n`` training samples uniformly with replacement.

        Args:
            n: number of samples.
            generator: torch generator for the indices (any device).

        Returns:
            ``(x, y)``: ``x`` of shape ``[n, *shape]`` and the matching labels (or ``None``),
            on the device of :attr:`train`.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"n: expected a positive integer number of samples, got {n!r}")
        index = torch.randint(self.train.shape[0], (n,), generator=generator,
                              device=generator.device).to(self.train.device)
        labels = None if self.train_labels is None else self.train_labels[index]
        return self.train[index], labels


def load_dataset(spec: str | Path, *, n_train: int = 20000, n_test: int = 2000, seed: int = 0,
                 shape: tuple[int, ...] | None = None, test_fraction: float = 0.2) -> Dataset:
    """Load a built-in or user data set with a seeded train/test split.

    Toys (see :data:`DATASET_NAMES`): ``n_train`` then ``n_test`` fresh points from a generator
    seeded with ``seed`` (independent draws). ``"gaussian"`` draws N(0, I) of per-sample
    ``shape`` (default ``(2,)``; e.g. ``(1, 8, 8)`` as the source for digits).

    Finite data (``"digits"``, files, image folders): a random permutation seeded with ``seed``
    holds out ``round(N * test_fraction)`` samples (at least one on each side); ``n_train`` and
    ``n_test`` are ignored. If ``shape`` is given, each sample is reshaped to it (its number of
    elements must match), e.g. a CSV of 64 columns to ``(1, 8, 8)``.

    Args:
        spec: built-in name or path to a ``.npy``/``.npz``/``.csv`` file or a PNG folder.
        n_train: training points drawn for toys.
        n_test: test points drawn for toys.
        seed: seed of the draws (toys) or of the split permutation (finite data).
        shape: per-sample shape (see above); ``None`` keeps the natural shape.
        test_fraction: fraction held out from finite data, in ``(0, 1)``.

    Returns:
        A :class:`Dataset` (float32 CPU tensors).

    Raises:
        DataError: unknown name that is not an existing path, or any file problem (see
            :mod:`monge.data.files`); InputError for invalid sizes, fractions or shapes.
    """
    name = str(spec)
    for arg, value in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{arg}: expected a positive integer, got {value!r}")
    if not (isinstance(test_fraction, int | float) and 0.0 < test_fraction < 1.0):
        raise InputError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    if shape is not None:
        shape = _check_shape(shape)

    if name in PROCEDURAL_NAMES:
        from monge.data.procedural import load_procedural  # lazy: it subclasses Dataset

        ds = load_procedural(name, n_train=n_train, n_test=n_test, seed=seed)
        if shape is not None:
            ds.train, ds.test = _reshape(ds.train, shape, name), _reshape(ds.test, shape, name)
        return ds
    if name in TOY_DATASETS:
        generator = torch.Generator().manual_seed(int(seed))
        if name == "gaussian":
            dims = shape if shape is not None else (2,)
            train = gaussian(n_train, generator, dims)
            test = gaussian(n_test, generator, dims)
        elif name in TOY_NUM_CLASSES:
            train, y_train = TOY_DATASETS[name](n_train, generator, return_labels=True)
            test, y_test = TOY_DATASETS[name](n_test, generator, return_labels=True)
            if shape is not None:
                train, test = _reshape(train, shape, name), _reshape(test, shape, name)
            return Dataset(name, train, test, y_train, y_test, TOY_NUM_CLASSES[name])
        else:
            train = TOY_DATASETS[name](n_train, generator)
            test = TOY_DATASETS[name](n_test, generator)
            if shape is not None:
                train, test = _reshape(train, shape, name), _reshape(test, shape, name)
        return Dataset(name, train, test, None, None, None)

    if name == "digits":
        x, y = load_digits()
        num_classes: int | None = DIGITS_NUM_CLASSES
    else:
        path = Path(name)
        if not path.exists():
            if path.suffix.lower() in (*ARRAY_EXTENSIONS, *IMAGE_EXTENSIONS) or "/" in name \
                    or "\\" in name:
                raise DataError(f"{name}: file not found")
            raise DataError(
                f"{name!r}: unknown data set and not an existing path; built-in names are "
                f"{', '.join(DATASET_NAMES)}")
        x, y = load_image_folder(path) if path.is_dir() else load_labeled_array(path)
        num_classes = None if y is None else int(y.max()) + 1

    if shape is not None:
        x = _reshape(x, shape, name)
    n = x.shape[0]
    n_held = min(max(round(n * test_fraction), 1), n - 1)
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    test_index, train_index = permutation[:n_held], permutation[n_held:]
    return Dataset(
        name=name,
        train=x[train_index].contiguous(),
        test=x[test_index].contiguous(),
        train_labels=None if y is None else y[train_index],
        test_labels=None if y is None else y[test_index],
        num_classes=num_classes,
    )


def _check_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape: expected a tuple of positive integers, got {shape!r}") from None
    if not dims or any(s < 1 for s in dims):
        raise InputError(f"shape: expected a tuple of positive integers, got {shape!r}")
    return dims


def _reshape(x: Tensor, shape: tuple[int, ...], name: str) -> Tensor:
    per_sample = math.prod(x.shape[1:])
    if math.prod(shape) != per_sample:
        raise DataError(
            f"{name}: cannot reshape samples of shape {tuple(x.shape[1:])} ({per_sample} "
            f"values) to {shape}")
    return x.reshape(x.shape[0], *shape)
