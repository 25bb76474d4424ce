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

from monge.core.registry import Registry
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
from monge.couplings.prefetch import PREFETCH_COUPLINGS, PrefetchedPairs, prefetchable
from monge.couplings.sinkhorn import SinkhornCoupling, SinkhornDiagnostics
from monge.couplings.weighted import (
    WeightDiagnostics,
    WeightedCoupling,
    effective_sample_size,
    gibbs_weights,
)
from monge.errors import InputError

COUPLINGS: Registry[Coupling] = Registry("coupling")
"""Every coupling by name; options reach its constructor as keyword arguments."""

for _name, _cls, _what in (
    ("independent", IndependentCoupling, "pairs as drawn (plain flow matching)"),
    ("ot", MinibatchOTCoupling, "exact minibatch OT permutation (OT-CFM)"),
    ("sinkhorn", SinkhornCoupling, "pairs sampled from the entropic plan (SB-CFM)"),
    ("label-ot", LabelOTCoupling, "OT within each class, or a cross-class penalty"),
    ("wcfm", WeightedCoupling, "pairs as drawn with Gibbs weights exp(-c/eps) (W-CFM)"),
    ("immiscible-la", ImmiscibleAssignmentCoupling, "noise permuted by linear assignment"),
    ("immiscible-knn", ImmiscibleKNNCoupling, "nearest of k noise draws"),
    ("immiscible-scale", ImmiscibleScalingCoupling, "data scaled by s (library only: needs "
     "unscaling at sampling time)"),
):
    COUPLINGS.register(_name, _cls, description=_what, run="" if _name == "immiscible-scale"
                       else "yes")

RUN_COUPLINGS: tuple[str, ...] = tuple(e.name for e in COUPLINGS if e.info["run"])
"""The couplings ``monge run`` trains with (all but those needing a sampling-time inverse)."""


def make_coupling(name: str, **kwargs) -> Coupling:
    """Build a coupling by name (``COUPLINGS.names()``) with keyword options."""
    entry = COUPLINGS.entry(name)
    try:
        return entry.factory(**kwargs)
    except TypeError as exc:
        raise InputError(f"coupling {name!r}: bad options {sorted(kwargs)} ({exc})") from None


__all__ = ["COUPLINGS", "PREFETCH_COUPLINGS", "RUN_COUPLINGS", "Coupling",
           "ImmiscibleAssignmentCoupling", "ImmiscibleKNNCoupling", "ImmiscibleScalingCoupling",
           "IndependentCoupling", "LabelOTCoupling", "MinibatchOTCoupling", "NoiseBias",
           "Pairing", "PrefetchedPairs", "SinkhornCoupling", "SinkhornDiagnostics",
           "WeightDiagnostics", "WeightedCoupling", "collect_coupled_noise",
           "effective_sample_size", "gibbs_weights", "make_coupling", "noise_marginal_bias",
           "prefetchable"]
