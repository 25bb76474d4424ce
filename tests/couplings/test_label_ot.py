"""LabelOTCoupling: no cross-class pairs, per-class optimality (POT), unbiased class noise."""

import numpy as np
import ot
import pytest
import torch

from monge.couplings import LabelOTCoupling, MinibatchOTCoupling
from monge.errors import InputError

torch.set_num_threads(2)


def _labelled(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centers = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    x1 = centers[y] + 0.3 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x0, x1, y


def _source_index(px0, x0):
    return torch.cdist(px0, x0).argmin(1)


def test_within_never_crosses_classes_and_is_optimal_per_class():
    x0, x1, y = _labelled()
    c = LabelOTCoupling("within")
    p = c(x0, x1, y1=y, generator=torch.Generator().manual_seed(1))
    src = _source_index(p.x0, x0)
    assert torch.equal(torch.sort(src)[0], torch.arange(len(y)))  # a permutation
    z = c.last_source_labels
    assert torch.equal(z[src], y)  # each target's source belongs to the target's group
    for k in range(3):
        rows, cols = (z == k).nonzero().squeeze(1), (y == k).nonzero().squeeze(1)
        M = ot.dist(x0[rows].numpy(), x1[cols].numpy())
        u = np.full(len(rows), 1 / len(rows))
        got = float(((p.x0[cols] - p.x1[cols]) ** 2).sum(1).mean())
        assert got == pytest.approx(ot.emd2(u, u, M), rel=1e-9)


def test_group_sizes_match_class_counts():
    _, _, y = _labelled(seed=4)
    c = LabelOTCoupling()
    x0, x1, _ = _labelled(seed=4)
    c(x0, x1, y1=y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.bincount(c.last_source_labels, minlength=3),
                       torch.bincount(y, minlength=3))


def test_class_conditional_noise_is_unbiased_unlike_plain_ot():
    g = torch.Generator().manual_seed(0)
    means = {"label": [], "plain": []}
    for _ in range(40):
        y = torch.randint(0, 2, (64,), generator=g)
        x1 = torch.stack([torch.where(y == 0, 5.0, -5.0), torch.zeros(64)], 1).double()
        x0 = torch.randn(64, 2, generator=g, dtype=torch.float64)
        pl = LabelOTCoupling()(x0, x1, y1=y, generator=g)
        pp = MinibatchOTCoupling()(x0, x1, y1=y)
        means["label"].append(pl.x0[y == 0, 0])
        means["plain"].append(pp.x0[y == 0, 0])
    label_mean = float(torch.cat(means["label"]).mean())
    plain_mean = float(torch.cat(means["plain"]).mean())
    assert abs(label_mean) < 0.12  # N(0,1) noise: std of the mean ~ 0.025
    assert plain_mean > 0.5       # global OT sends the right half-plane to class 0


def test_penalty_limits():
    x0, x1, y = _labelled(seed=2)
    n = len(y)
    u = np.full(n, 1 / n)
    plain = ot.emd2(u, u, ot.dist(x0.numpy(), x1.numpy()))
    p0 = LabelOTCoupling("penalty", penalty=0.0)(x0, x1, y1=y,
                                                  generator=torch.Generator().manual_seed(0))
    assert float(((p0.x0 - p0.x1) ** 2).sum(1).mean()) == pytest.approx(plain, rel=1e-9)
    c = LabelOTCoupling("penalty", penalty=1e4)
    p = c(x0, x1, y1=y, generator=torch.Generator().manual_seed(0))
    src = _source_index(p.x0, x0)
    assert torch.equal(c.last_source_labels[src], y)


def test_missing_or_bad_labels_give_clear_errors():
    x0, x1, y = _labelled()
    with pytest.raises(InputError, match="y1: label-ot coupling needs class labels"):
        LabelOTCoupling()(x0, x1)
    with pytest.raises(InputError, match="y1: expected integer"):
        LabelOTCoupling()(x0, x1, y1=y.double())
    with pytest.raises(InputError, match="mode"):
        LabelOTCoupling("sometimes")
