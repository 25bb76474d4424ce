"""Sample-quality and transport metrics: exact W2, energy distance, MMD, trajectory straightness
and kinetic energy, a classifier-feature Fréchet distance for the 8x8 digits, and how
conservative a field is (Jacobian asymmetry, loop circulation, the harmless-error test).

Every function takes samples ``[n, ...]`` (flattened per sample) on any device and returns a
Python float (or a small dataclass); nothing here trains or samples a transport model.
"""

from monge.metrics.conservativeness import (
    AsymmetryEstimate,
    CirculationEstimate,
    ConservativenessReport,
    ConservativenessResult,
    HarmlessErrorResult,
    HarmlessErrorRow,
    HarmlessPerturbations,
    antisymmetric_matrix,
    conservativeness_report,
    field_jacobian,
    harmless_error_test,
    harmless_perturbations,
    jacobian_asymmetry,
    loop_circulation,
    random_potential,
)
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
    "AsymmetryEstimate",
    "CirculationEstimate",
    "ConservativenessReport",
    "ConservativenessResult",
    "HarmlessErrorResult",
    "HarmlessErrorRow",
    "HarmlessPerturbations",
    "antisymmetric_matrix",
    "conservativeness_report",
    "field_jacobian",
    "harmless_error_test",
    "harmless_perturbations",
    "jacobian_asymmetry",
    "loop_circulation",
    "random_potential",
]
