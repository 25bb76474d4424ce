"""Classifier-feature Fréchet distance for scikit-learn's 8x8 digits (the FID idea, offline).

The Fréchet distance (:mod:`monge.metrics.frechet`) is computed on the 64-d penultimate features
of a small CNN trained once on the digits of :func:`monge.data.digits.load_digits`, the same way
FID uses Inception features (Heusel et al. 2017). The classifier trains in a few seconds on a CPU,
reaches >= 95 % held-out accuracy, and is cached as safetensors (no pickle) in ``$MONGE_CACHE`` or
``~/.cache/monge/``, keyed by :data:`CLASSIFIER_VERSION`.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from monge.core.checks import as_tensor, check_finite
from monge.core.io import atomic_path
from monge.data.digits import load_digits
from monge.errors import InputError
from monge.metrics.frechet import feature_frechet_distance

CLASSIFIER_VERSION = "digits-cnn-v1"
"""Cache key; bump it whenever the architecture, data scaling or training recipe changes."""

NUM_CLASSES = 10
FEATURE_DIM = 64
_SEED = 0
_HELD_OUT_FRACTION = 0.2
_EPOCHS = 15
_BATCH_SIZE = 64
_LEARNING_RATE = 2e-3
_BATCH_EVAL = 1024

# In-process memo of loaded classifiers, keyed by (cache file, device).
_LOADED: dict[tuple[str, str], DigitsClassifier] = {}


class DigitsClassifier(nn.Module):
    """Small CNN for 8x8 digits in ``[-1, 1]``: two 3x3 conv layers, a 64-d feature layer, logits.

    ``features(x)`` gives the 64-d penultimate activations used by
    :func:`classifier_frechet_distance`; ``forward(x)`` gives the 10 class logits.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.fc = nn.Linear(32 * 4 * 4, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[N, 64]`` of images ``[N, 1, 8, 8]``.

        Taken before the last ReLU so that no unit is identically zero and the feature
        covariance stays full rank (a well-conditioned matrix square root)."""
        h = torch.relu(self.conv1(x))
        h = torch.max_pool2d(torch.relu(self.conv2(h)), 2)
        return self.fc(h.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``[N, 10]`` of images ``[N, 1, 8, 8]``."""
        return self.head(torch.relu(self.features(x)))


def _digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as float32 images ``[N, 1, 8, 8]`` in [-1, 1] and their labels."""
    return load_digits()


def _digits_split() -> tuple[np.ndarray, np.ndarray]:
    """Seeded, class-stratified train / held-out indices (80 % / 20 %) used to train the
    classifier; the held-out part is never seen in training."""
    from sklearn.model_selection import train_test_split

    _, labels = _digits_arrays()
    idx = np.arange(labels.shape[0])
    train, held_out = train_test_split(idx, test_size=_HELD_OUT_FRACTION, random_state=_SEED,
                                       stratify=labels.numpy())
    return np.sort(train), np.sort(held_out)


@torch.no_grad()
def _accuracy(model: DigitsClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((model(images).argmax(1) == labels).float().mean())


def _train_classifier() -> tuple[DigitsClassifier, float]:
    """Train a :class:`DigitsClassifier` on the training split (seeded, CPU, a few seconds).

    Adam, cross-entropy, random one-pixel shifts as augmentation. Returns the model in eval
    mode and its held-out accuracy."""
    images, labels = _digits_arrays()
    train_idx, held_out_idx = (torch.as_tensor(i) for i in _digits_split())
    x_train, y_train = images[train_idx], labels[train_idx]
    gen = torch.Generator().manual_seed(_SEED)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)  # parameter initialisation, without touching the caller's RNG
        model = DigitsClassifier()
    optimiser = torch.optim.Adam(model.parameters(), lr=_LEARNING_RATE)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=_EPOCHS)
    model.train()
    for _ in range(_EPOCHS):
        order = torch.randperm(x_train.shape[0], generator=gen)
        for start in range(0, x_train.shape[0], _BATCH_SIZE):
            batch = order[start:start + _BATCH_SIZE]
            xb = x_train[batch]
            # Random shift by up to one pixel (padding with the background value -1).
            shift = torch.randint(-1, 2, (2,), generator=gen).tolist()
            xb = nn.functional.pad(xb, (1, 1, 1, 1), value=-1.0)
            xb = xb[:, :, 1 + shift[0]:9 + shift[0], 1 + shift[1]:9 + shift[1]]
            loss = nn.functional.cross_entropy(model(xb), y_train[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        scheduler.step()
    model.eval()
    return model, _accuracy(model, images[held_out_idx], labels[held_out_idx])


def _cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("MONGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "monge"


def _save_atomic(model: DigitsClassifier, path: Path, accuracy: float) -> None:
    """Write the weights as safetensors, atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"version": CLASSIFIER_VERSION,
                                               "held_out_accuracy": f"{accuracy:.6f}"})


def _load(path: Path) -> DigitsClassifier:
    """Load weights from a safetensors file (never unpickles); raise ``ValueError`` on a file
    of another version or with the wrong tensors."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        version = (f.metadata() or {}).get("version")
        if version != CLASSIFIER_VERSION:
            raise ValueError(f"version {version!r}, expected {CLASSIFIER_VERSION!r}")
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    model = DigitsClassifier()
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_digits_classifier(cache_dir: str | os.PathLike[str] | None = None) -> DigitsClassifier:
    """Return the digits feature classifier, training and caching it on first use.

    The weights live in ``<cache>/digits-cnn-v1.safetensors`` where ``<cache>`` is ``cache_dir``,
    else ``$MONGE_CACHE``, else ``~/.cache/monge``. Training (seeded, about 5 s on 2 CPU cores)
    happens once; the file is written atomically and read with safetensors only. A cache file
    that is unreadable or from another version is retrained and replaced (with a warning); an
    unwritable cache folder gives a warning and an uncached classifier. Loaded classifiers are
    memoised per process.

    Args:
        cache_dir: folder for the cached weights (``None``: ``$MONGE_CACHE`` or
            ``~/.cache/monge``).

    Returns:
        A :class:`DigitsClassifier` on the CPU in eval mode (shared; do not modify it).
    """
    path = _cache_dir(cache_dir) / f"{CLASSIFIER_VERSION}.safetensors"
    key = (str(path.resolve()), "cpu")
    if key in _LOADED:
        return _LOADED[key]
    model: DigitsClassifier | None = None
    if path.is_file():
        try:
            model = _load(path)
        except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
            warnings.warn(f"load_digits_classifier: cached weights {path} are unusable ({exc}); "
                          "retraining", UserWarning, stacklevel=2)
    if model is None:
        model, accuracy = _train_classifier()
        try:
            _save_atomic(model, path, accuracy)
        except OSError as exc:
            warnings.warn(f"load_digits_classifier: cannot write the cache {path} ({exc}); "
                          "the classifier will be retrained next session", UserWarning,
                          stacklevel=2)
    for p in model.parameters():
        p.requires_grad_(False)
    _LOADED[key] = model
    return model


def _classifier_on(device: torch.device, classifier: DigitsClassifier | None) -> DigitsClassifier:
    """The given classifier, or the cached default one placed on ``device`` (memoised)."""
    if classifier is not None:
        return classifier
    base = load_digits_classifier()
    if device.type == "cpu":
        return base
    key = (next(k for k, v in _LOADED.items() if v is base)[0], str(device))
    if key not in _LOADED:
        _LOADED[key] = copy.deepcopy(base).to(device)
    return _LOADED[key]


def _as_images(x: object, name: str) -> torch.Tensor:
    """Digits batch as float ``[N, 1, 8, 8]``; also accepts ``[N, 8, 8]`` and ``[N, 64]``."""
    t = check_finite(as_tensor(x, name), name)
    if t.ndim == 0 or t.shape[0] == 0 or t[0].numel() != 64:
        raise InputError(f"{name}: expected 8x8 digit images [N, 1, 8, 8] (N >= 1), "
                         f"got shape {tuple(t.shape)}")
    t = t.reshape(t.shape[0], 1, 8, 8)
    lo, hi = float(t.min()), float(t.max())
    if lo < -1.5 or hi > 1.5:
        warnings.warn(f"{name}: values span [{lo:.3g}, {hi:.3g}] but the classifier expects "
                      "[-1, 1] (pixels x/16*2 - 1)", UserWarning, stacklevel=3)
    return t


@torch.no_grad()
def _apply(model: nn.Module, images: torch.Tensor, fn: str) -> torch.Tensor:
    param = next(model.parameters())
    images = images.to(device=param.device, dtype=param.dtype)
    method = getattr(model, fn)
    return torch.cat([method(images[i:i + _BATCH_EVAL])
                      for i in range(0, images.shape[0], _BATCH_EVAL)])


def classifier_frechet_distance(x: object, y: object,
                                classifier: DigitsClassifier | None = None) -> float:
    """Fréchet distance between the classifier features of two batches of 8x8 digits.

    Method: FID (Heusel et al. 2017) with the 64-d penultimate features of
    :class:`DigitsClassifier` instead of Inception: fit a Gaussian (mean, unbiased covariance)
    to each feature cloud and apply :func:`~monge.metrics.frechet.frechet_distance`. Like FID it
    is biased upwards for small batches; compare values computed with the same batch sizes (a
    few hundred or more).
    Cost: one forward pass per image plus ``O(64^3)``.

    Args:
        x: images ``[N, 1, 8, 8]`` (or ``[N, 8, 8]``, ``[N, 64]``) in ``[-1, 1]``, ``N >= 2``.
        y: images of the same kind, ``M >= 2``.
        classifier: feature network (``None``: :func:`load_digits_classifier`'s, placed on
            ``x``'s device); a given classifier is used where it is.

    Returns:
        The classifier Fréchet distance (``>= 0``; 0 for identical feature statistics).

    Raises:
        InputError: wrong shapes, NaN/Inf or fewer than 2 images.

    Example:
        >>> from sklearn.datasets import load_digits
        >>> real = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 8 - 1
        >>> noise = torch.rand(900, 1, 8, 8) * 2 - 1
        >>> fd_real = classifier_frechet_distance(real[::2], real[1::2])
        >>> fd_real < 0.1 * classifier_frechet_distance(real[::2], noise)
        True
    """
    xs, ys = _as_images(x, "x"), _as_images(y, "y")
    for t, name in ((xs, "x"), (ys, "y")):
        if t.shape[0] < 2:
            raise InputError(f"{name}: need at least 2 images for a covariance, got {t.shape[0]}")
    model = _classifier_on(xs.device, classifier)
    return feature_frechet_distance(_apply(model, xs, "features"),
                                    _apply(model, ys, "features"))


def predict_digits(x: object, classifier: DigitsClassifier | None = None) -> torch.Tensor:
    """Predicted classes ``[N]`` (int64, CPU) of 8x8 digits in ``[-1, 1]`` by the held-out
    classifier (:func:`load_digits_classifier`): the label-accuracy metric of conditional
    sampling, editing and steering."""
    xs = _as_images(x, "x")
    return _apply(_classifier_on(xs.device, classifier), xs, "forward").argmax(1).cpu()


def class_histogram_entropy(x: object, classifier: DigitsClassifier | None = None) -> float:
    """Entropy (nats) of the histogram of predicted classes of a batch of 8x8 digits.

    Method: ``H = -sum_c p_c log p_c`` with ``p_c`` the fraction of images whose arg-max class is
    ``c`` (``0 log 0 = 0``). It is ``log(10) ~ 2.3026`` for a perfectly class-balanced batch and
    drops towards 0 under mode collapse; a diversity check in the spirit of the Inception Score's
    marginal term (Salimans et al. 2016, "Improved Techniques for Training GANs").

    Args:
        x: images ``[N, 1, 8, 8]`` (or ``[N, 8, 8]``, ``[N, 64]``) in ``[-1, 1]``.
        classifier: classifier (``None``: :func:`load_digits_classifier`'s).

    Returns:
        The entropy in nats, in ``[0, log 10]``.
    """
    labels = predict_digits(x, classifier)
    counts = torch.bincount(labels, minlength=NUM_CLASSES).to(torch.float64)
    p = counts[counts > 0] / counts.sum()
    return max(0.0, float(-(p * p.log()).sum()))


__all__ = [
    "CLASSIFIER_VERSION",
    "DigitsClassifier",
    "load_digits_classifier",
    "predict_digits",
    "classifier_frechet_distance",
    "class_histogram_entropy",
]
