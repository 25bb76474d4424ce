"""Guidance as model wrappers: every solver samples a guided model like any other.

:class:`ClassifierFreeGuidance` combines a class-conditional model's conditional and
unconditional predictions (Ho & Salimans 2022). It is a :class:`~monge.paths.ModelWrapper`, so
``predict``, the schedule and NFE counting work unchanged, and its ``nfe`` counts network
evaluations (2 per guided evaluation). :class:`ClassifierGuidance` adds the gradient of a
time-conditioned classifier p_φ(y | x_t, t) (:func:`train_noisy_classifier`) to the score
(Dhariwal & Nichol 2021).
"""

from monge.guidance.cfg import ClassifierFreeGuidance
from monge.guidance.classifier import (
    ClassifierGuidance,
    ClassifierTraining,
    NoisyClassifier,
    load_classifier,
    save_classifier,
    train_noisy_classifier,
)

__all__ = ["ClassifierFreeGuidance", "ClassifierGuidance", "ClassifierTraining",
           "NoisyClassifier", "load_classifier", "save_classifier", "train_noisy_classifier"]
