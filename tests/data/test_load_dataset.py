"""load_dataset: toys, digits, user files, seeded random-permutation splits and sampling."""

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits as sklearn_load_digits

from monge.data import DATASET_NAMES, Dataset, load_dataset, load_digits
from monge.data.dataset import PROCEDURAL_NAMES
from monge.data.toys import TOY_DATASETS, TOY_NUM_CLASSES
from monge.errors import DataError, InputError


def test_digits_images_and_labels():
    x, y = load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert x.min() == -1 and x.max() == 1
    reference = sklearn_load_digits()
    assert torch.equal(x[:, 0], torch.from_numpy(
        (reference.images / 16 * 2 - 1).astype(np.float32)))
    assert torch.equal(torch.bincount(y), torch.from_numpy(np.bincount(reference.target)))


def test_digits_split():
    ds = load_dataset("digits", seed=0)
    assert isinstance(ds, Dataset) and ds.shape == (1, 8, 8) and ds.num_classes == 10
    assert len(ds.train) + len(ds.test) == 1797 and len(ds.test) == round(1797 * 0.2)
    assert set(ds.test_labels.tolist()) == set(range(10))
    x, y = load_digits()
    counts = torch.bincount(ds.train_labels, minlength=10) + torch.bincount(ds.test_labels,
                                                                            minlength=10)
    assert torch.equal(counts, torch.bincount(y))
    flat = load_dataset("digits", shape=(64,))
    assert flat.shape == (64,) and torch.equal(flat.test, ds.test.reshape(-1, 64))


@pytest.mark.parametrize("name", [n for n in DATASET_NAMES if n != "digits"
                                  and n not in PROCEDURAL_NAMES])
def test_toy_datasets_are_seeded_independent_draws(name):
    ds = load_dataset(name, n_train=500, n_test=100, seed=1)
    assert ds.train.shape == (500, 2) and ds.test.shape == (100, 2) and ds.shape == (2,)
    if name in TOY_NUM_CLASSES:  # mixture component / moon: labels of the same draws
        assert ds.num_classes == TOY_NUM_CLASSES[name]
        assert ds.train_labels.shape == (500,) and ds.test_labels.shape == (100,)
        assert set(ds.train_labels.tolist()) == set(range(ds.num_classes))
        torch.testing.assert_close(ds.train, TOY_DATASETS[name](
            500, torch.Generator().manual_seed(1)))
    else:
        assert ds.train_labels is None and ds.num_classes is None
    again = load_dataset(name, n_train=500, n_test=100, seed=1)
    assert torch.equal(ds.train, again.train) and torch.equal(ds.test, again.test)
    other = load_dataset(name, n_train=500, n_test=100, seed=2)
    assert not torch.allclose(ds.train, other.train)
    assert not torch.allclose(ds.train[:100], ds.test)


def test_gaussian_source_for_images():
    ds = load_dataset("gaussian", n_train=3000, n_test=10, shape=(1, 8, 8))
    assert ds.train.shape == (3000, 1, 8, 8) and ds.shape == (1, 8, 8)
    assert abs(ds.train.mean().item()) < 0.01 and abs(ds.train.std().item() - 1) < 0.01


def test_sorted_file_split_is_a_seeded_permutation(tmp_path):
    n = 100
    x = np.stack([np.arange(n), np.arange(n) % 7], axis=1).astype(np.float32)
    y = (np.arange(n) >= n // 2).astype(np.int64)  # sorted by class
    np.savez(tmp_path / "sorted.npz", x=x, y=y)
    ds = load_dataset(str(tmp_path / "sorted.npz"), seed=3, test_fraction=0.2)
    assert len(ds.test) == 20 and len(ds.train) == 80 and ds.num_classes == 2
    assert set(ds.test_labels.tolist()) == {0, 1}
    ids = torch.cat([ds.train[:, 0], ds.test[:, 0]]).long()
    assert torch.equal(ids.sort().values, torch.arange(n))
    assert torch.equal(torch.cat([ds.train_labels, ds.test_labels]), (ids >= n // 2).long())
    same = load_dataset(tmp_path / "sorted.npz", seed=3)
    assert torch.equal(same.test, ds.test)
    other = load_dataset(tmp_path / "sorted.npz", seed=4)
    assert not torch.equal(other.test, ds.test)


def test_split_keeps_one_row_each_side(tmp_path):
    np.save(tmp_path / "four.npy", np.arange(8, dtype=np.float32).reshape(4, 2))
    assert len(load_dataset(tmp_path / "four.npy", test_fraction=0.01).test) == 1
    assert len(load_dataset(tmp_path / "four.npy", test_fraction=0.99).train) == 1


def test_sample_with_replacement_keeps_labels_aligned(tmp_path):
    labels = np.arange(40) % 4
    x = np.stack([labels, np.arange(40)], axis=1).astype(np.float32)
    np.savez(tmp_path / "lab.npz", x=x, y=labels)
    ds = load_dataset(tmp_path / "lab.npz")
    xs, ys = ds.sample(500, torch.Generator().manual_seed(0))
    assert xs.shape == (500, 2) and torch.equal(xs[:, 0].long(), ys)
    assert len(torch.unique(xs[:, 1])) < 500  # with replacement: repeats
    assert set(xs[:, 1].long().tolist()) <= set(ds.train[:, 1].long().tolist())
    again, _ = ds.sample(500, torch.Generator().manual_seed(0))
    assert torch.equal(xs, again)
    toy = load_dataset("rings", n_train=50, n_test=5)
    xt, yt = toy.sample(8, torch.Generator().manual_seed(0))
    assert xt.shape == (8, 2) and yt is None
    moons = load_dataset("moons", n_train=50, n_test=5)   # labelled toy: labels follow rows
    xm, ym = moons.sample(8, torch.Generator().manual_seed(0))
    rows = torch.cdist(xm, moons.train).argmin(1)
    assert torch.equal(ym, moons.train_labels[rows])
    with pytest.raises(InputError, match="n:"):
        toy.sample(0, torch.Generator())


def test_csv_reshaped_and_image_folder(tmp_path):
    rows = np.random.default_rng(0).normal(size=(10, 64)).astype(np.float32)
    np.savetxt(tmp_path / "flat.csv", rows, delimiter=",", fmt="%.9g")
    ds = load_dataset(tmp_path / "flat.csv", shape=(1, 8, 8))
    assert ds.shape == (1, 8, 8) and len(ds.train) + len(ds.test) == 10
    with pytest.raises(DataError, match="flat.csv.*reshape"):
        load_dataset(tmp_path / "flat.csv", shape=(3, 5))
    for cls in ("a", "b"):
        for i in range(3):
            (tmp_path / "img" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((4, 4), 40 * i, np.uint8)).save(tmp_path / "img" / cls /
                                                                     f"{i}.png")
    images = load_dataset(tmp_path / "img", test_fraction=0.5)
    assert images.shape == (1, 4, 4) and images.num_classes == 2 and len(images.test) == 3


def test_unknown_names_and_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="unknown data set") as info:
        load_dataset("nine_gaussians")
    assert "8gaussians" in str(info.value) and "digits" in str(info.value)
    with pytest.raises(DataError, match="missing.npy.*not found"):
        load_dataset(str(tmp_path / "missing.npy"))
    with pytest.raises(InputError, match="n_train"):
        load_dataset("moons", n_train=0)
    with pytest.raises(InputError, match="test_fraction"):
        load_dataset("digits", test_fraction=1.0)
    with pytest.raises(DataError, match="moons.*reshape"):
        load_dataset("moons", n_train=10, n_test=10, shape=(3,))
