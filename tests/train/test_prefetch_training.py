"""Minibatch-OT training with pairs computed ahead: identical pairs, weights and resumes."""

import threading

import pytest
import torch

from monge.couplings import IndependentCoupling, MinibatchOTCoupling, SinkhornCoupling
from monge.couplings.prefetch import PrefetchedPairs
from monge.errors import InputError
from monge.models import MLP
from monge.ot import assignment, sq_euclidean_cost
from monge.paths import LinearPath
from monge.train import FlowMatchingLoss, Trainer, TrainerConfig
from monge.train.trainer import DATA_SEED_OFFSET


def _sampler(n, g):
    return torch.randn(n, 2, generator=g), torch.rand(n, 2, generator=g) * 4.0 - 2.0, None


class _Recording(FlowMatchingLoss):
    """FlowMatchingLoss that keeps the pairs it trained on."""

    def __init__(self, coupling):
        super().__init__(LinearPath(), coupling=coupling)
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, model, x0, x1, y1=None, generator=None):
        self.seen.append((x0.clone(), x1.clone()))
        return super().forward(model, x0, x1, y1, generator)


def _trainer(coupling, out=None, prefetch=None, steps=16, sampler=_sampler):
    torch.manual_seed(0)
    model = MLP(2, hidden=16, depth=2, time_dim=8)
    cfg = TrainerConfig(steps=steps, batch_size=32, lr=3e-3, warmup_steps=2,
                        checkpoint_every=100, log_every=4, seed=3)
    return Trainer(model, _Recording(coupling), sampler, cfg, out_dir=out, progress=False,
                   prefetch=prefetch)


def _same_weights(t1, t2):
    for (k, a), (_, b) in zip(t1.base_model.state_dict().items(),
                              t2.base_model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    for a, b in zip(t1.ema.parameters(), t2.ema.parameters(), strict=True):
        assert torch.equal(a, b)


def _no_prefetch_thread():
    return not any(t.name == "monge-prefetch" and t.is_alive() for t in threading.enumerate())


def test_prefetched_ot_pairs_and_weights_equal_inline():
    ahead, inline = _trainer(MinibatchOTCoupling()), _trainer(MinibatchOTCoupling(), prefetch=False)
    assert ahead.prefetch and not inline.prefetch
    ahead.fit()
    inline.fit()
    _same_weights(ahead, inline)
    assert len(ahead.loss.seen) == 16
    for (a0, a1), (b0, b1) in zip(ahead.loss.seen, inline.loss.seen, strict=True):
        assert torch.equal(a0, b0) and torch.equal(a1, b1)
    # the pairs are the exact OT permutation of the data stream's k-th batch
    ref = PrefetchedPairs(_sampler, MinibatchOTCoupling(), 32, seed=3 + DATA_SEED_OFFSET)
    for (x0, x1), p in zip(ahead.loss.seen, ref.synchronous(16), strict=True):
        assert torch.equal(x0, p.x0) and torch.equal(x1, p.x1)
        perm = assignment(sq_euclidean_cost(x0, x1))
        assert torch.equal(perm, torch.arange(32))      # already matched: identity is optimal
    # the loss gets its coupling back and no producer thread is left
    assert isinstance(ahead.loss.coupling, MinibatchOTCoupling) and _no_prefetch_thread()


@pytest.mark.parametrize("coupling", [MinibatchOTCoupling(), SinkhornCoupling(0.2)])
def test_prefetched_resume_is_bit_identical(tmp_path, coupling):
    full = _trainer(coupling, tmp_path / "full")
    full.fit()
    _trainer(coupling, tmp_path / "half").fit(stop_at=7)      # killed after step 7
    resumed = _trainer(coupling, tmp_path / "half")
    res = resumed.fit(resume=True)
    assert res.resumed_from == 7 and res.steps == 16
    _same_weights(full, resumed)
    for (a0, a1), (b0, b1) in zip(full.loss.seen[7:], resumed.loss.seen, strict=True):
        assert torch.equal(a0, b0) and torch.equal(a1, b1)
    # a run without the thread resumes the threaded run's checkpoint identically
    inline = _trainer(coupling, tmp_path / "half2", prefetch=False)
    inline.fit(stop_at=7)
    inline2 = _trainer(coupling, tmp_path / "half2", prefetch=True)
    inline2.fit(resume=True)
    _same_weights(full, inline2)


def test_sampler_error_closes_thread_and_propagates():
    calls = {"n": 0}

    def failing(n, g):
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("data source failed")
        return _sampler(n, g)

    tr = _trainer(MinibatchOTCoupling(), sampler=failing)
    with pytest.raises(RuntimeError, match="data source failed"):
        tr.fit()
    assert tr.step == 5 and _no_prefetch_thread()
    assert isinstance(tr.loss.coupling, MinibatchOTCoupling)


def test_prefetch_needs_a_model_independent_coupling():
    with pytest.raises(InputError, match="prefetch"):
        _trainer(IndependentCoupling(), prefetch=True)
    plain = _trainer(IndependentCoupling())
    assert not plain.prefetch and plain.data_generator is None
