"""Sample-quality and transport metrics: exact W2, energy distance, MMD, trajectory straightness
and kinetic energy, and a classifier-feature Fréchet distance for the 8x8 digits.

Every function takes samples ``[n, ...]`` (flattened per sample) on any device and returns a
Python float (or a small dataclass); nothing here trains or samples a transport model.
"""

from monge.metrics.digits_classifier import (
    CLASSIFIER_VERSION,
    DigitsClassifier,
    class_histogram_entropy,
    classifier_frechet_distance,
    load_digits_classifier,
    predict_digits,
)
from monge.metrics.energy import energy_distance
from monge.metrics.frechet import feature_frechet_distance, frechet_distance
from monge.metrics.mmd import median_bandwidth, mmd_rbf
from monge.metrics.sinkhorn_divergence import sinkhorn_divergence
from monge.metrics.trajectory import kinetic_energy, straightness, transport_cost
from monge.metrics.wasserstein import W2Result, w2_assignment, wasserstein2

__all__ = [
    "W2Result",
    "wasserstein2",
    "w2_assignment",
    "energy_distance",
    "mmd_rbf",
    "sinkhorn_divergence",
    "median_bandwidth",
    "straightness",
    "kinetic_energy",
    "transport_cost",
    "CLASSIFIER_VERSION",
    "DigitsClassifier",
    "load_digits_classifier",
    "predict_digits",
    "frechet_distance",
    "feature_frechet_distance",
    "classifier_frechet_distance",
    "class_histogram_entropy",
]
