"""Interpolant objectives: reduction to flow matching, the value at the exact field, the antithetic
estimator (unbiased, lower variance) and a short training run against the Gaussian closed form."""

import pytest
import torch
from torch import nn

from monge.errors import InputError
from monge.models import MLP
from monge.paths import LinearPath
from monge.paths.interpolant import GaussianInterpolant, make_interpolant
from monge.train import FlowMatchingLoss, Trainer, TrainerConfig, UniformTime
from monge.train.interpolant_loss import InterpolantLoss
from monge.train.time_samplers import TimeSampler

S0 = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
S1 = torch.tensor([[0.25, -0.1], [-0.1, 0.6]], dtype=torch.float64)
M0, M1 = [0.0, 1.0], [2.0, -1.0]


class FixedTime(TimeSampler):
    def __init__(self, t: float):
        self.t = t

    def sample(self, n, *, generator=None, dtype=torch.float32, device="cpu"):
        return torch.full((n,), self.t, dtype=dtype, device=device)


class Exact(nn.Module):
    """An exact field of the Gaussian problem, with the model signature."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, t, **cond):
        return self.fn(x, t)


def _pairs(gi, n, seed):
    g = torch.Generator().manual_seed(seed)
    return (gi.sample(n, 0, generator=g, dtype=torch.float64),
            gi.sample(n, 1, generator=g, dtype=torch.float64))


def test_zero_gamma_velocity_loss_is_flow_matching():
    torch.manual_seed(0)
    model = MLP(2, hidden=32, depth=2)
    x0, x1 = torch.randn(2, 128, 2).unbind(0)
    sampler = UniformTime(1e-3, 1 - 1e-3)
    fm = FlowMatchingLoss(LinearPath(), time_sampler=sampler)
    si = InterpolantLoss(make_interpolant("linear", gamma="zero"), target="velocity",
                         time_sampler=sampler)
    a = fm(model, x0, x1, None, torch.Generator().manual_seed(5))
    b = si(model, x0, x1, None, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a.t, b.t)
    torch.testing.assert_close(a.per_example, b.per_example)


@pytest.mark.parametrize("target", ["velocity", "score", "denoiser"])
def test_mse_and_quadratic_forms_have_the_same_gradient(target):
    torch.manual_seed(1)
    model = MLP(2, hidden=16, depth=2)
    x0, x1 = torch.randn(2, 64, 2).unbind(0)
    grads = []
    for form in ("mse", "quadratic"):
        loss = InterpolantLoss(target=target, form=form)
        model.zero_grad()
        loss(model, x0, x1, None, torch.Generator().manual_seed(2)).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("tv", [0.001, 0.3])
def test_score_objective_at_exact_score(tv):
    """E[(|s|² + 2 z·s/γ)/D] = −E|s|²/D = −tr(V_t⁻¹)/D at the true score, for the plain and
    the antithetic estimator; the antithetic one has much lower variance when γ is small."""
    si = make_interpolant("linear", gamma="sqrt")
    gi = GaussianInterpolant(si, M0, S0, M1, S1)
    model = Exact(gi.score)
    x0, x1 = _pairs(gi, 40_000, 0)
    expected = -float(torch.trace(torch.linalg.inv(gi.marginal(tv).cov))) / 2
    var = {}
    for anti in (False, True):
        loss = InterpolantLoss(si, target="score", antithetic=anti, form="quadratic",
                               time_sampler=FixedTime(tv))
        out = loss(model, x0, x1, None, torch.Generator().manual_seed(7))
        se = float(out.per_example.std()) / len(out.per_example) ** 0.5
        assert abs(float(out.loss) - expected) < 4 * se + 1e-3, (anti, float(out.loss), expected)
        var[anti] = float(out.per_example.var())
    if tv == 0.001:
        assert var[True] < var[False] / 20, var


def test_velocity_objective_at_exact_velocity():
    """At the true b: E[(|b|² − 2 b·target)/D] = −E|b|²/D = −(|μ̇|² + tr(C V⁻¹ C))/D."""
    si = make_interpolant("trigonometric", gamma="quadratic")
    gi = GaussianInterpolant(si, M0, S0, M1, S1)
    tv = 0.6
    _, d_mean, cov, cross = gi._terms(tv)
    expected = -float(d_mean[0] @ d_mean[0] + torch.trace(cross[0] @ torch.linalg.solve(
        cov[0], cross[0]))) / 2
    x0, x1 = _pairs(gi, 40_000, 1)
    loss = InterpolantLoss(si, target="velocity", form="quadratic", time_sampler=FixedTime(tv))
    out = loss(Exact(gi.velocity), x0, x1, None, torch.Generator().manual_seed(3))
    se = float(out.per_example.std()) / len(out.per_example) ** 0.5
    assert abs(float(out.loss) - expected) < 4 * se, (float(out.loss), expected)
    # a perturbed field has a strictly larger objective (unique minimiser)
    worse = loss(Exact(lambda x, t: gi.velocity(x, t) + 0.3), x0, x1, None,
                 torch.Generator().manual_seed(3))
    torch.testing.assert_close(float(worse.loss) - float(out.loss), 0.09, atol=0.01, rtol=0)


def test_trainer_learns_gaussian_velocity_and_score():
    """300 steps of the unchanged Trainer fit b and s of the Gaussian problem."""
    torch.manual_seed(0)
    si = make_interpolant("linear", gamma="sqrt")
    gi = GaussianInterpolant(si, M0, S0, M1, S1)

    def sample_batch(n, generator):
        return (gi.sample(n, 0, generator=generator), gi.sample(n, 1, generator=generator),
                None)

    gen = torch.Generator().manual_seed(11)
    x0, x1 = gi.sample(4000, 0, generator=gen), gi.sample(4000, 1, generator=gen)
    t = 0.05 + 0.9 * torch.rand(4000, generator=gen)
    xt, _ = si.sample(x0, x1, t, generator=gen)
    for target, exact in (("velocity", gi.velocity), ("score", gi.score)):
        model = MLP(2, hidden=64, depth=2, time_dim=32)
        cfg = TrainerConfig(steps=300, batch_size=128, lr=3e-3, warmup_steps=20, ema_decay=0.0,
                            checkpoint_every=10_000, log_every=10_000, seed=0)
        Trainer(model, InterpolantLoss(si, target=target), sample_batch, cfg,
                progress=False).fit()
        with torch.no_grad():
            pred, ref = model(xt, t), exact(xt, t)
        rel = float((pred - ref).norm() / ref.norm())
        assert rel < 0.2, (target, rel)


def test_bad_input():
    with pytest.raises(InputError, match="target"):
        InterpolantLoss(target="noise")
    with pytest.raises(InputError, match="needs γ > 0"):
        InterpolantLoss(make_interpolant(gamma="zero"), target="score")
    with pytest.raises(InputError, match="form"):
        InterpolantLoss(form="l1")
    with pytest.raises(InputError, match="interpolant"):
        InterpolantLoss(LinearPath())
    with pytest.raises(InputError, match="cond_dropout"):
        InterpolantLoss(cond_dropout=0.1)
    with pytest.raises(InputError, match="x0 and x1"):
        InterpolantLoss()(MLP(2, hidden=8), torch.randn(4, 2), torch.randn(5, 2))
