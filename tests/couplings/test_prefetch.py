"""Prefetched couplings: identical pairs to the synchronous loop for a seed, errors surface."""

import pytest
import torch

from monge.couplings.base import IndependentCoupling
from monge.couplings.minibatch_ot import MinibatchOTCoupling
from monge.couplings.prefetch import PrefetchedPairs
from monge.errors import InputError


def draw(n, g):
    return torch.randn(n, 2, generator=g), torch.rand(n, 2, generator=g) + 2.0, None


def test_prefetched_pairs_equal_synchronous_pairs():
    ref = PrefetchedPairs(draw, MinibatchOTCoupling(), 64, seed=3).synchronous(6)
    with PrefetchedPairs(draw, MinibatchOTCoupling(), 64, seed=3, depth=3) as pf:
        got = [pf.next() for _ in range(6)]
    for r, p in zip(ref, got, strict=True):
        assert torch.equal(r.x0, p.x0) and torch.equal(r.x1, p.x1)
    # and they are OT pairs: no swap of two partners lowers the cost
    x0, x1 = got[0].x0, got[0].x1
    base = ((x0 - x1) ** 2).sum()
    sw = x0.clone()
    sw[[0, 1]] = sw[[1, 0]]
    assert float(((sw - x1) ** 2).sum()) >= float(base) - 1e-5


def test_sample_batch_interface_and_errors():
    pf = PrefetchedPairs(draw, IndependentCoupling(), 8, seed=0)
    x0, x1, y1 = pf.sample_batch(8, torch.Generator())
    assert x0.shape == (8, 2) and y1 is None
    with pytest.raises(InputError, match="n:"):
        pf.sample_batch(4)
    pf.close()

    def broken(n, g):
        raise RuntimeError("data source failed")

    with PrefetchedPairs(broken, IndependentCoupling(), 8) as bad, \
            pytest.raises(RuntimeError, match="data source failed"):
        bad.next()
    with pytest.raises(InputError, match="depth"):
        PrefetchedPairs(draw, IndependentCoupling(), 8, depth=0)
    with pytest.raises(InputError, match="coupling"):
        PrefetchedPairs(draw, lambda *a: None, 8)
