"""The digits feature classifier: accuracy, safetensors cache, classifier FD and entropy."""

import math

import pytest
import torch
from safetensors.torch import save_file

import monge.metrics.digits_classifier as digits_classifier
from monge.errors import InputError
from monge.metrics import (
    CLASSIFIER_VERSION,
    DigitsClassifier,
    class_histogram_entropy,
    classifier_frechet_distance,
    load_digits_classifier,
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Train the classifier once into a temporary MONGE_CACHE for the whole module."""
    folder = tmp_path_factory.mktemp("monge_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MONGE_CACHE", str(folder))
        mp.setattr(digits_classifier, "_LOADED", {})
        model = load_digits_classifier()
        yield folder, model


@pytest.fixture(scope="module")
def digits():
    return digits_classifier._digits_arrays()


def test_classifier_is_cached_as_safetensors(cache):
    folder, model = cache
    files = sorted(p.name for p in folder.iterdir())
    assert files == [f"{CLASSIFIER_VERSION}.safetensors"]  # no temp files left behind
    assert isinstance(model, DigitsClassifier)
    assert load_digits_classifier() is model  # memoised in-process
    # A fresh load reads the file (safetensors, no pickle) and gives the same network.
    reloaded = digits_classifier._load(folder / files[0])
    x = torch.linspace(-1, 1, 128).reshape(2, 1, 8, 8)
    assert torch.equal(reloaded(x), model(x))


def test_classifier_held_out_accuracy(cache, digits):
    _, model = cache
    images, labels = digits
    train_idx, held_out_idx = digits_classifier._digits_split()
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
    monkeypatch.setattr(digits_classifier, "_LOADED", {})
    # Skip retraining: the replacement is the already-trained model.
    monkeypatch.setattr(digits_classifier, "_train_classifier", lambda: (model, 1.0))
    with pytest.warns(UserWarning, match="unusable"):
        assert load_digits_classifier(tmp_path) is model
    # The unusable file was replaced by a valid one of this version holding the same network.
    x = torch.linspace(-1, 1, 128).reshape(2, 1, 8, 8)
    assert torch.equal(digits_classifier._load(path)(x), model(x))
