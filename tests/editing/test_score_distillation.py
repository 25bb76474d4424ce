"""Score distillation and pixel-wise gradient clipping (PGC, Pan et al., ICLR 2024): the SDS
gradient against closed forms and the path's own conversions, the clipping rules' invariants,
the backward hook against a manual chain rule, tail statistics against scipy, the driver on a
Gaussian prior, and one-line errors."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from monge.editing.score_distillation import (
    PIXEL_CLIP_RULES,
    SDS_WEIGHTINGS,
    CoordinateMLPRenderer,
    FreeImageRenderer,
    clip_pixel_gradient,
    distill_image,
    gradient_tail_stats,
    register_pixel_clip,
    sds_gradient,
    sds_loss,
)
from monge.errors import InputError
from monge.paths import LinearPath


def gaussian_velocity(mean: torch.Tensor, std: float):
    """The exact linear-path velocity of x1 ~ N(mean, std²I), x0 ~ N(0, I):

    x_t ~ N(t·m, (t²s² + (1 − t)²)·I), and v*(x, t) = E[x1 − x0 | x_t = x]
    = m + (t·s² − (1 − t)) / (t²s² + (1 − t)²) · (x − t·m).
    """
    def field(x, t):
        tb = t.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        var = tb ** 2 * std ** 2 + (1 - tb) ** 2
        return mean + (tb * std ** 2 - (1 - tb)) / var * (x - tb * mean)
    return field


def heavy_gradient(shape=(3, 4, 8, 8), seed=0):
    g = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    scale = torch.rand((shape[0], 1, *shape[2:]), generator=torch.Generator().manual_seed(seed + 1))
    return g * (0.05 / (scale + 0.01))          # per-pixel scales with a heavy tail


# ---------------------------------------------------------------------------------------------
# the SDS gradient


def test_sds_gradient_forms_match_the_paths_conversions():
    """ "epsilon" weighting is exactly ε̂ − ε, "velocity" the velocity residual, "x1" is z − ẑ,
    with ε̂, ẑ from LinearPath's own conversions of the velocity."""
    torch.manual_seed(0)
    z, eps = torch.randn(5, 2, 3, 3, dtype=torch.float64), torch.randn(5, 2, 3, 3,
                                                                      dtype=torch.float64)
    t = torch.rand(5, dtype=torch.float64) * 0.9 + 0.05
    net = torch.nn.Conv2d(2, 2, 3, padding=1).double()
    model = lambda x, tt: net(x) * tt.reshape(-1, 1, 1, 1)
    path = LinearPath()
    z_t = path.sample_xt(eps, z, t)
    with torch.no_grad():
        v = model(z_t, t)
    eps_hat = path.convert(v, "velocity", "epsilon", z_t, t)
    z_hat = path.convert(v, "velocity", "x1", z_t, t)
    torch.testing.assert_close(sds_gradient(model, z, t, eps, weighting="epsilon"), eps_hat - eps)
    torch.testing.assert_close(sds_gradient(model, z, t, eps, weighting="x1"), z - z_hat)
    torch.testing.assert_close(sds_gradient(model, z, t, eps), (z - eps) - v)
    custom = sds_gradient(model, z, t, eps, weighting=lambda tt: tt ** 2)
    torch.testing.assert_close(custom, (t ** 2).reshape(-1, 1, 1, 1) * (z - z_hat))


def test_sds_gradient_uses_no_network_jacobian():
    """The gradient is detached and equals the flow-matching loss's gradient minus its
    Jacobian term: d/dz ½‖v(z_t) − (z − ε)‖² = t·J_vᵀ r − r with r = v − (z − ε)."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    model = lambda x, t: net(x)
    z = torch.randn(3, 4, requires_grad=True)
    eps, t = torch.randn(3, 4), torch.full((3,), 0.4)
    g = sds_gradient(model, z, t, eps)
    assert not g.requires_grad
    z_t = 0.4 * z + 0.6 * eps
    residual = model(z_t, t) - (z - eps)
    full = torch.autograd.grad(0.5 * residual.pow(2).sum(), z, retain_graph=True)[0]
    jac_term = torch.autograd.grad(residual, z, grad_outputs=residual.detach())[0] \
        + residual.detach()
    torch.testing.assert_close(full, jac_term - residual.detach())   # the decomposition
    torch.testing.assert_close(g, -residual.detach())
    assert (full - g).norm() > 1e-3       # the Jacobian term is not zero here: g is not `full`


def test_sds_loss_gradient_equals_sds_gradient_through_an_encoder():
    torch.manual_seed(2)
    enc = torch.nn.Conv2d(3, 2, 3, stride=2, padding=1)
    model = lambda x, t, y: torch.tanh(x) + y.reshape(-1, 1, 1, 1)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    z = enc(x)
    eps, t, y = torch.randn_like(z), torch.tensor([0.2, 0.7]), torch.tensor([1.0, -1.0])
    loss = sds_loss(model, z, t, eps, y=y)
    gx = torch.autograd.grad(loss, x, retain_graph=True)[0]
    gz = sds_gradient(model, z, t, eps, y=y)
    assert torch.autograd.grad(loss, z)[0].equal(gz)
    expected = torch.autograd.grad(enc(x), x, grad_outputs=gz)[0]     # (∂E/∂x)ᵀ g
    torch.testing.assert_close(gx, expected)


def test_gaussian_prior_sds_points_exactly_toward_the_mean():
    """For N(m, s²I) the exact x1-prediction is E[x1 | z_t] = m + k_t(z − m) + (noise term
    linear in ε), k_t = t²s²/(t²s² + (1 − t)²); with ε and −ε the noise cancels, so the mean SDS
    gradient (weighting "x1") is exactly (1 − k_t)(z − m): descent drives z toward m."""
    m, s = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64), 0.3
    model = gaussian_velocity(m, s)
    z = torch.tensor([[3.0, 1.0, -1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    eps = torch.randn(2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for t in (0.1, 0.5, 0.9):
        mean = 0.5 * (sds_gradient(model, z, t, eps, weighting="x1")
                      + sds_gradient(model, z, t, -eps, weighting="x1"))
        k = t ** 2 * s ** 2 / (t ** 2 * s ** 2 + (1 - t) ** 2)
        torch.testing.assert_close(mean, (1 - k) * (z - m))
    at_mean = sds_gradient(model, m.expand(2, 3), 0.5, torch.zeros(2, 3, dtype=torch.float64))
    torch.testing.assert_close(at_mean, torch.zeros(2, 3, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# the clipping rules


def test_pgc_keeps_each_pixels_direction_and_bounds_its_channel_max():
    g, c = heavy_gradient(), 0.1
    out = clip_pixel_gradient(g, "pgc", c)
    peak = g.abs().amax(dim=1, keepdim=True)
    assert bool((out.abs().amax(dim=1) <= c * (1 + 1e-6)).all())
    scale = out / g                                  # one factor per pixel, over all channels
    assert torch.allclose(scale, scale[:, :1].expand_as(scale), rtol=1e-6, atol=0)
    assert bool((scale > 0).all()) and bool((scale <= 1 + 1e-7).all())
    small = (peak <= c).expand_as(g)
    assert small.any() and (~small).any()            # both kinds of pixel are exercised
    assert out[small].equal(g[small])                # pixels below c are untouched
    torch.testing.assert_close(out.abs().amax(dim=1, keepdim=True)[peak > c],
                               torch.full_like(peak[peak > c], c))
    assert clip_pixel_gradient(torch.zeros(1, 3, 2, 2), "pgc", c).eq(0).all()   # no NaN at 0


def test_clamp_changes_a_pixels_direction_where_pgc_does_not():
    g = torch.tensor([1.0, 0.1, -0.3]).reshape(1, 3, 1, 1)
    cos = lambda a, b: float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(),
                                                                   dim=0))
    clamped, pgc = clip_pixel_gradient(g, "clamp", 0.2), clip_pixel_gradient(g, "pgc", 0.2)
    assert clamped.flatten().tolist() == pytest.approx([0.2, 0.1, -0.2])
    assert cos(clamped, g) < 0.9
    assert cos(pgc, g) == pytest.approx(1.0, abs=1e-7)
    assert pgc.flatten().tolist() == pytest.approx([0.2, 0.02, -0.06])


def test_the_other_rules():
    g, c = heavy_gradient(seed=4), 0.5
    assert clip_pixel_gradient(g, "none", c).equal(g)
    glob = clip_pixel_gradient(g, "global", c)
    norms = glob.flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.minimum(g.flatten(1).norm(dim=1),
                                                    torch.tensor(c)))
    ratio = (glob / g).flatten(1)
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))   # one factor per image
    peak = clip_pixel_gradient(g, "global_max", c).abs().flatten(1).amax(dim=1)
    torch.testing.assert_close(peak, torch.full_like(peak, c))
    soft = clip_pixel_gradient(g, "soft", c)
    ch_max = g.abs().amax(dim=1, keepdim=True)
    torch.testing.assert_close(soft, c * g / (ch_max + c))
    assert bool((soft.abs().amax(dim=1) < c).all())
    assert set(PIXEL_CLIP_RULES.names()) >= {"none", "pgc", "clamp", "global", "soft"}


@pytest.mark.parametrize("rule", ["pgc", "clamp", "global", "soft", "none"])
def test_hook_modifies_the_gradient_reaching_theta_as_the_rule_says(rule):
    c = 0.05
    torch.manual_seed(5)
    enc = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    model = lambda x, t: -x
    # (a) a free image (identity): θ's gradient is the clipped pixel gradient itself
    free = FreeImageRenderer((3, 8, 8), batch=2, init_scale=1.0, activation="identity",
                             generator=0)
    eps, t = torch.randn(2, 4, 4, 4), torch.tensor([0.3, 0.6])
    image = free()
    raw = torch.autograd.grad(sds_loss(model, enc(image), t, eps), image)[0]
    image = free()
    register_pixel_clip(image, rule, c)
    sds_loss(model, enc(image), t, eps).backward()
    torch.testing.assert_close(free.theta.grad, clip_pixel_gradient(raw, rule, c))
    if rule != "none":
        assert not torch.allclose(free.theta.grad, raw)      # the rule acted
    # (b) a coordinate MLP: manual chain rule θ ← (∂x/∂θ)ᵀ rule(g_x)
    mlp = CoordinateMLPRenderer((3, 8, 8), batch=2, hidden=16, depth=2, generator=1)
    image = mlp()
    raw = torch.autograd.grad(sds_loss(model, enc(image), t, eps), image, retain_graph=True)[0]
    manual = torch.autograd.grad(image, list(mlp.parameters()),
                                 grad_outputs=clip_pixel_gradient(raw, rule, c))
    image = mlp()
    seen = []
    handle = register_pixel_clip(image, rule, c, observer=lambda r, k: seen.append(r))
    sds_loss(model, enc(image), t, eps).backward()
    handle.remove()
    torch.testing.assert_close(seen[0], raw)
    for p, expected in zip(mlp.parameters(), manual, strict=True):
        torch.testing.assert_close(p.grad, expected)


def test_hook_scales_the_threshold_by_the_loss_scale():
    free = FreeImageRenderer((3, 4, 4), init_scale=1.0, activation="identity", generator=2)
    target = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(6))
    image = free()
    register_pixel_clip(image, "pgc", 0.1, loss_scale=1024.0)
    (1024.0 * (image * target).sum()).backward()
    torch.testing.assert_close(free.theta.grad / 1024.0, clip_pixel_gradient(target, "pgc", 0.1))


# ---------------------------------------------------------------------------------------------
# tail statistics


def test_tail_stats_against_scipy_and_a_spike():
    g = heavy_gradient(shape=(2, 3, 16, 16), seed=7)
    s = gradient_tail_stats(g)
    norms = g.double().norm(dim=1).flatten(1).numpy()
    med = np.median(norms, axis=1)
    assert s.images == 2 and s.pixels == 256
    assert s.median == pytest.approx(med.mean(), rel=1e-9)
    assert s.max_ratio == pytest.approx((norms.max(axis=1) / med).mean(), rel=1e-9)
    assert s.q99_ratio == pytest.approx((np.quantile(norms, 0.99, axis=1) / med).mean(),
                                        rel=1e-9)
    assert s.kurtosis == pytest.approx(stats.kurtosis(norms, axis=1, fisher=False).mean(),
                                       rel=1e-9)
    assert s.entry_kurtosis == pytest.approx(
        stats.kurtosis(g.double().flatten(1).numpy(), axis=1, fisher=False).mean(), rel=1e-9)
    spike = torch.ones(1, 1, 16, 16)
    spike[0, 0, 3, 5] = 100.0
    t = gradient_tail_stats(spike)
    assert t.max_ratio == pytest.approx(100.0)
    assert t.top_share == pytest.approx((100.0 ** 2 + 2) / (100.0 ** 2 + 255))   # top 3 pixels
    gauss = gradient_tail_stats(torch.randn(8, 1, 32, 32,
                                            generator=torch.Generator().manual_seed(8)))
    assert abs(gauss.entry_kurtosis - 3.0) < 0.3 and s.entry_kurtosis > 5.0
    assert math.isnan(gradient_tail_stats(torch.ones(1, 3, 4, 4)).kurtosis)


# ---------------------------------------------------------------------------------------------
# the driver


@pytest.mark.parametrize("rule", ["none", "pgc"])
def test_distill_image_drives_a_free_image_to_the_gaussian_mean(rule):
    """SDS is mode-seeking: with the exact prior N(m, s²I) in pixel space (identity encoder),
    the image converges to m; PGC's direction-preserving clip only slows it down."""
    m = torch.tensor([0.6, -0.4, 0.2]).reshape(1, 3, 1, 1).expand(1, 3, 6, 6)
    model = gaussian_velocity(m, 0.2)
    render = FreeImageRenderer((3, 6, 6), batch=2, init_scale=1.0, activation="identity",
                               generator=3)
    start = float((render().detach() - m).pow(2).mean())
    res = distill_image(render, lambda x: x, model, steps=150, lr=0.05, rule=rule, c=0.3,
                        weighting="x1", optimizer="sgd", generator=4, record_every=50)
    final = float((res.image - m).pow(2).mean())
    assert final < 0.05 * start
    assert len(res.fm_loss) == 150 and res.nfe == 150 and len(res.tail_stats) == 4
    assert np.mean(res.fm_loss[-20:]) < np.mean(res.fm_loss[:20])
    if rule == "pgc":
        assert res.clipped_fraction[0] > 0.5      # early gradients were clipped
    else:
        assert res.clipped_fraction[0] == 0.0


def test_distill_image_through_an_encoder_with_a_coordinate_mlp():
    enc = torch.nn.Conv2d(3, 2, 2, stride=2).requires_grad_(False)
    target = torch.zeros(1, 2, 4, 4)
    model = gaussian_velocity(target, 0.1)
    mlp = CoordinateMLPRenderer((3, 8, 8), batch=2, hidden=16, depth=2, generator=5)
    before = float(enc(mlp().detach()).pow(2).mean())
    res = distill_image(mlp, enc, model, steps=60, lr=1e-2, rule="pgc", c=0.01,
                        weighting="x1", generator=6)
    assert float(enc(res.image).pow(2).mean()) < 0.5 * before
    assert res.image.shape == (2, 3, 8, 8) and res.image.abs().max() < 1


def test_distill_image_loss_scale_is_invisible():
    """An AMP-style loss scale multiplies the loss and the threshold and is divided out of θ's
    gradient: the trajectory is the same as without it (a power of two: exact up to rounding)."""
    model = gaussian_velocity(torch.zeros(1, 3, 4, 4), 0.5)
    images = []
    for scale in (1.0, 1024.0):
        render = FreeImageRenderer((3, 4, 4), batch=2, init_scale=1.0, generator=7)
        images.append(distill_image(render, lambda x: x, model, steps=5, lr=0.1, rule="pgc",
                                    c=0.2, optimizer="sgd", generator=8,
                                    loss_scale=scale).image)
    torch.testing.assert_close(images[0], images[1])


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_input_errors_name_the_argument():
    model = lambda x, t: -x
    z, eps = torch.zeros(2, 3), torch.zeros(2, 3)
    cases = [
        (lambda: sds_gradient(model, z, 1.0, eps), "t:"),
        (lambda: sds_gradient(model, z, torch.rand(3), eps), "t:"),
        (lambda: sds_gradient(model, z, 0.5, torch.zeros(2, 4)), "noise:"),
        (lambda: sds_gradient(model, z.fill_(float("nan")), 0.5, eps), "z:"),
        (lambda: sds_gradient(lambda x, t: x[:1], torch.zeros(2, 3), 0.5, eps), "model:"),
        (lambda: sds_gradient(model, torch.zeros(2, 3), 0.5, eps, weighting="dream"),
         "sds weighting:"),
        (lambda: sds_gradient(model, torch.zeros(2, 3), 0.5, eps, weighting=lambda t: -t),
         "weighting:"),
        (lambda: clip_pixel_gradient(torch.zeros(2, 3), "pgc", 0.1), "g:"),
        (lambda: clip_pixel_gradient(torch.zeros(1, 3, 2, 2), "pgcc", 0.1), "pixel clip rule:"),
        (lambda: clip_pixel_gradient(torch.zeros(1, 3, 2, 2), "pgc", 0.0), "c:"),
        (lambda: register_pixel_clip(torch.zeros(1, 3, 2, 2), "pgc", 0.1), "image:"),
        (lambda: gradient_tail_stats(torch.zeros(3, 4)), "g:"),
        (lambda: FreeImageRenderer((3, 4)), "shape:"),
        (lambda: distill_image(FreeImageRenderer((1, 2, 2)), lambda x: x, model, steps=0,
                               lr=0.1), "steps:"),
        (lambda: distill_image(FreeImageRenderer((1, 2, 2)), lambda x: x, model, steps=1,
                               lr=-1.0), "lr:"),
        (lambda: distill_image(FreeImageRenderer((1, 2, 2)), lambda x: x, model, steps=1,
                               lr=0.1, t_range=(0.5, 1.0)), "t_range:"),
        (lambda: distill_image(FreeImageRenderer((1, 2, 2)), lambda x: x, model, steps=1,
                               lr=0.1, optimizer="lbfgs"), "optimizer:"),
        (lambda: distill_image(lambda: torch.zeros(1, 1, 2, 2), lambda x: x, model, steps=1,
                               lr=0.1), "parameters:"),
    ]
    for call, name in cases:
        with pytest.raises(InputError, match=name):
            call()
    assert "velocity" in SDS_WEIGHTINGS
