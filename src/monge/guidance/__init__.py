"""Guidance as model wrappers: every solver samples a guided model like any other.

:class:`ClassifierFreeGuidance` combines a class-conditional model's conditional and
unconditional predictions (Ho & Salimans 2022). It is a :class:`~monge.paths.ModelWrapper`, so
``predict``, the schedule and NFE counting work unchanged, and its ``nfe`` counts network
evaluations (2 per guided evaluation).
"""

from monge.guidance.cfg import ClassifierFreeGuidance

__all__ = ["ClassifierFreeGuidance"]
