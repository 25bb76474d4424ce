"""Couplings: how source and target minibatches are paired for training.

| name | class | pairs | cost per batch |
|---|---|---|---|
| ``independent`` | :class:`IndependentCoupling` | as drawn | O(1) |
| ``ot`` | :class:`MinibatchOTCoupling` | exact OT permutation (OT-CFM) | O(B² d + B³) |
| ``sinkhorn`` | ``SinkhornCoupling`` | sampled from the entropic plan | O(B² · iters) |
| ``label-ot`` | :class:`LabelOTCoupling` | OT within each class / cross-class penalty | O(Σ n_c³) |
| ``wcfm`` | :class:`WeightedCoupling` | as drawn, Gibbs weights exp(-c/eps) | O(B d) |
| ``immiscible-la`` | ``ImmiscibleAssignmentCoupling`` | noise permuted (LSA) | O(B² d + B³) |
| ``immiscible-knn`` | :class:`ImmiscibleKNNCoupling` | nearest of k noises | O(B k d) |
| ``immiscible-scale`` | :class:`ImmiscibleScalingCoupling` | data scaled by s | O(B d) |
"""

from __future__ import annotations

from monge.couplings.base import Coupling, IndependentCoupling, Pairing
from monge.couplings.immiscible import (
    ImmiscibleAssignmentCoupling,
    ImmiscibleKNNCoupling,
    ImmiscibleScalingCoupling,
    NoiseBias,
    collect_coupled_noise,
    noise_marginal_bias,
)
from monge.couplings.label_ot import LabelOTCoupling
from monge.couplings.minibatch_ot import MinibatchOTCoupling
from monge.couplings.sinkhorn import SinkhornCoupling, SinkhornDiagnostics
from monge.couplings.weighted import (
    WeightDiagnostics,
    WeightedCoupling,
    effective_sample_size,
    gibbs_weights,
)
from monge.errors import InputError

COUPLINGS: dict[str, type[Coupling]] = {
    "independent": IndependentCoupling,
    "ot": MinibatchOTCoupling,
    "sinkhorn": SinkhornCoupling,
    "label-ot": LabelOTCoupling,
    "wcfm": WeightedCoupling,
    "immiscible-la": ImmiscibleAssignmentCoupling,
    "immiscible-knn": ImmiscibleKNNCoupling,
    "immiscible-scale": ImmiscibleScalingCoupling,
}


def make_coupling(name: str, **kwargs) -> Coupling:
    """Build a coupling by name (see the table above) with keyword options."""
    if name not in COUPLINGS:
        raise InputError(f"coupling: unknown name {name!r}; expected one of {sorted(COUPLINGS)}")
    try:
        return COUPLINGS[name](**kwargs)
    except TypeError as exc:
        raise InputError(f"coupling {name!r}: bad options {sorted(kwargs)} ({exc})") from None


__all__ = ["COUPLINGS", "Coupling", "ImmiscibleAssignmentCoupling", "ImmiscibleKNNCoupling",
           "ImmiscibleScalingCoupling", "IndependentCoupling", "LabelOTCoupling",
           "MinibatchOTCoupling", "NoiseBias", "Pairing", "SinkhornCoupling",
           "SinkhornDiagnostics", "WeightDiagnostics", "WeightedCoupling",
           "collect_coupled_noise", "effective_sample_size", "gibbs_weights", "make_coupling",
           "noise_marginal_bias"]
