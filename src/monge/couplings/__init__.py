"""Couplings: how source and target minibatches are paired for training."""

from __future__ import annotations

from monge.couplings.base import Coupling, IndependentCoupling, Pairing
from monge.couplings.minibatch_ot import MinibatchOTCoupling
from monge.errors import InputError

COUPLINGS: dict[str, type[Coupling]] = {
    "independent": IndependentCoupling,
    "ot": MinibatchOTCoupling,
}


def make_coupling(name: str, **kwargs) -> Coupling:
    """Build a coupling by name."""
    if name not in COUPLINGS:
        raise InputError(f"coupling: unknown name {name!r}; expected one of {sorted(COUPLINGS)}")
    return COUPLINGS[name](**kwargs)


__all__ = ["COUPLINGS", "Coupling", "IndependentCoupling", "MinibatchOTCoupling", "Pairing",
           "make_coupling"]
