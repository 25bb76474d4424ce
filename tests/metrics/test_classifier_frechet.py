"""Fréchet distance (closed forms) and the digits feature classifier (accuracy, cache, FD)."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import monge.metrics.frechet as frechet
from monge.errors import InputError
from monge.metrics import (
    CLASSIFIER_VERSION,
    DigitsClassifier,
    class_histogram_entropy,
    classifier_frechet_distance,
    frechet_distance,
    load_digits_classifier,
)


def test_frechet_distance_diagonal_closed_form():
    # W2^2 between N(m1, diag(s1^2)) and N(m2, diag(s2^2)) = |m1 - m2|^2 + |s1 - s2|^2.
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.2, 2.0, size=6), rng.uniform(0.2, 2.0, size=6)
    expected = np.sum((m1 - m2) ** 2) + np.sum((s1 - s2) ** 2)
    got = frechet_distance(m1, np.diag(s1**2), m2, np.diag(s2**2))
    assert got == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(torch.from_numpy(m1), torch.from_numpy(np.diag(s1**2)),
                            torch.from_numpy(m1), torch.from_numpy(np.diag(s1**2))) < 1e-10


def test_frechet_distance_full_covariances_match_eigen_formula():
    # tr (C1 C2)^{1/2} = sum sqrt(eig(C1^{1/2} C2 C1^{1/2})), computed with symmetric eigh.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    w, v = np.linalg.eigh(c1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ c2 @ root1), 0, None)).sum()
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * cross
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu2, c2, mu1, c1) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_bad_input():
    with pytest.raises(InputError, match="expected shapes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))
    with pytest.raises(InputError, match="^cov1: .*NaN"):
        frechet_distance(np.zeros(2), np.full((2, 2), np.nan), np.zeros(2), np.eye(2))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Train the classifier once into a temporary MONGE_CACHE for the whole module."""
    folder = tmp_path_factory.mktemp("monge_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MONGE_CACHE", str(folder))
        mp.setattr(frechet, "_LOADED", {})
        model = load_digits_classifier()
        yield folder, model


@pytest.fixture(scope="module")
def digits():
    return frechet._digits_arrays()


def test_classifier_is_cached_as_safetensors(cache):
    folder, model = cache
    files = sorted(p.name for p in folder.iterdir())
    assert files == [f"{CLASSIFIER_VERSION}.safetensors"]  # no temp files left behind
    assert isinstance(model, DigitsClassifier)
    assert load_digits_classifier() is model  # memoised in-process
    # A fresh load reads the file (safetensors, no pickle) and gives the same network.
    reloaded = frechet._load(folder / files[0])
    x = torch.linspace(-1, 1, 128).reshape(2, 1, 8, 8)
    assert torch.equal(reloaded(x), model(x))


def test_classifier_held_out_accuracy(cache, digits):
    _, model = cache
    images, labels = digits
    train_idx, held_out_idx = frechet._digits_split()
    assert len(set(train_idx) & set(held_out_idx)) == 0
    accuracy = float((model(images[held_out_idx]).argmax(1) == labels[held_out_idx])
                     .float().mean())
    assert accuracy >= 0.95
    assert model.features(images[:5]).shape == (5, 64)


def test_frechet_real_halves_much_smaller_than_noise(cache, digits):
    images, _ = digits
    noise = torch.rand(900, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fd_real = classifier_frechet_distance(images[::2], images[1::2])
    fd_noise = classifier_frechet_distance(images[::2], noise)
    assert 20 * fd_real < fd_noise
    # Accepts [N, 64] input and a classifier passed explicitly.
    assert classifier_frechet_distance(images[::2].reshape(-1, 64), images[1::2],
                                       classifier=cache[1]) == pytest.approx(fd_real, rel=1e-6)


def test_class_histogram_entropy(cache, digits):
    images, labels = digits
    assert class_histogram_entropy(images) == pytest.approx(math.log(10), abs=0.01)
    # A batch of a single class collapses the histogram.
    assert class_histogram_entropy(images[labels == 3]) < 0.2


def test_image_input_errors(cache):
    with pytest.raises(InputError, match="^x: expected 8x8"):
        classifier_frechet_distance(torch.zeros(4, 1, 7, 7), torch.zeros(4, 1, 8, 8))
    with pytest.raises(InputError, match="^y: need at least 2"):
        classifier_frechet_distance(torch.zeros(4, 64), torch.zeros(1, 64))
    with pytest.raises(InputError, match="^x: .*NaN"):
        class_histogram_entropy(torch.full((3, 1, 8, 8), float("nan")))
    with pytest.warns(UserWarning, match=r"expects \[-1, 1\]"):
        class_histogram_entropy(torch.full((3, 1, 8, 8), 16.0))


@pytest.mark.parametrize("content", ["pickle", "old-version"])
def test_unusable_cache_is_retrained(tmp_path, monkeypatch, cache, content):
    _, model = cache
    path = tmp_path / f"{CLASSIFIER_VERSION}.safetensors"
    if content == "pickle":
        torch.save(model.state_dict(), path)  # a pickle, which must never be loaded
    else:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
                  metadata={"version": "digits-cnn-v0"})
    monkeypatch.setattr(frechet, "_LOADED", {})
    monkeypatch.setattr(frechet, "_train_classifier", lambda: (model, 1.0))  # skip retraining
    with pytest.warns(UserWarning, match="unusable"):
        assert load_digits_classifier(tmp_path) is model
    assert frechet._load(path) is not None  # replaced by a valid file of this version
