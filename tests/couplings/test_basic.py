"""Couplings: independent keeps the batch; minibatch OT is the exact OT permutation (vs POT)."""

import numpy as np
import ot
import pytest
import torch

from monge.couplings import IndependentCoupling, MinibatchOTCoupling, make_coupling
from monge.errors import InputError


def test_independent_is_identity():
    x0, x1 = torch.randn(8, 2), torch.randn(8, 2)
    p = IndependentCoupling()(x0, x1)
    assert torch.equal(p.x0, x0) and torch.equal(p.x1, x1) and p.weights is None


@pytest.mark.parametrize("shape", [(64, 2), (32, 1, 4, 4)])
def test_minibatch_ot_is_a_permutation_with_pot_cost(shape):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(*shape, generator=g, dtype=torch.float64)
    x1 = torch.randn(*shape, generator=g, dtype=torch.float64) + 1.0
    y1 = torch.arange(shape[0])
    p = MinibatchOTCoupling()(x0, x1, y1=y1)
    # same multiset of source rows, targets and labels untouched
    assert torch.equal(torch.sort(p.x0.flatten(1), dim=0)[0], torch.sort(x0.flatten(1), dim=0)[0])
    assert torch.equal(p.x1, x1) and torch.equal(p.y1, y1)
    cost = float(((p.x0 - p.x1) ** 2).flatten(1).sum(1).mean())
    M = ot.dist(x0.flatten(1).numpy(), x1.flatten(1).numpy())
    n = shape[0]
    assert cost == pytest.approx(ot.emd2(np.full(n, 1 / n), np.full(n, 1 / n), M), rel=1e-9)
    indep = float(((x0 - x1) ** 2).flatten(1).sum(1).mean())
    assert cost <= indep


def test_batch_mismatch_and_unknown_name():
    with pytest.raises(InputError, match="batch sizes differ"):
        MinibatchOTCoupling()(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(InputError, match="unknown name"):
        make_coupling("magic")
