"""The one model wrapper: predictions through exact conversions, NFE = network calls, the declared
clamp, fields of any kind, and the schedule transform (re-timing onto another path)."""

import pytest
import torch

from monge.errors import InputError
from monge.paths import (
    EDMPath,
    GaussianMixture,
    LinearPath,
    ModelWrapper,
    ScheduleTransform,
    VPPath,
    make_interpolant,
)
from monge.solvers import Dopri5, Euler, PIController, integrate

GMM = GaussianMixture(means=torch.tensor([[-2.0, 0.0], [2.0, 1.0]]),
                      stds=torch.tensor([0.4, 0.6]))
AFFINE = [LinearPath(), VPPath("linear"), VPPath("cosine"), EDMPath()]


def _ideal(path, kind):
    """An exact network predicting ``kind`` on ``path`` (from the GMM's closed forms)."""
    def net(x, t, **_):
        if kind == "velocity":
            return GMM.velocity(x, t, path)  # finite at the data end, where σ = 0
        x1 = GMM.posterior_mean(x, t, path)
        return path.convert(x1, "x1", kind, x, t)
    return net


def _points(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    t = 0.1 + 0.8 * torch.rand(n, generator=g, dtype=torch.float64)
    return x, t


@pytest.mark.parametrize("path", AFFINE, ids=repr)
@pytest.mark.parametrize("kind", ["velocity", "x1", "epsilon", "score"])
def test_every_prediction_gives_the_exact_velocity_and_score(path, kind):
    model = ModelWrapper(_ideal(path, kind), path, kind, t_clamp=0.0)
    x, t = _points()
    torch.testing.assert_close(model(x, t), GMM.velocity(x, t, path), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(model.predict("score", x, t), GMM.score(x, t, path),
                               rtol=1e-8, atol=1e-8)
    assert model.nfe == 2


def test_predict_many_kinds_costs_one_network_call():
    path = LinearPath()
    model = ModelWrapper(_ideal(path, "x1"), path, "x1")
    x, t = _points()
    v, x1, eps = model.predict(("velocity", "x1", "epsilon"), x, t)
    assert model.nfe == 1
    torch.testing.assert_close(path.sample_xt(eps, x1, t), x)  # x = t·x1 + (1 − t)·ε
    model.reset_nfe()
    assert model.nfe == 0


def test_clamp_is_declared_and_applied():
    seen = []
    path = LinearPath()
    model = ModelWrapper(lambda x, t: seen.append(t.clone()) or x, path, "x1")
    assert model.t_clamp == 1e-3 and "t_clamp=0.001" in repr(model)
    model(torch.zeros(2, 1), torch.tensor([0.0, 1.0]))
    assert seen[0].tolist() == pytest.approx([1e-3, 1 - 1e-3])
    assert ModelWrapper(lambda x, t: x, path, "velocity").t_clamp == 0.0


def test_bad_prediction_names_the_path():
    with pytest.raises(InputError, match="^prediction: 'banana'"):
        ModelWrapper(lambda x, t: x, LinearPath(), "banana")
    with pytest.raises(InputError, match="interpolant: cannot convert"):
        ModelWrapper(lambda x, t: x, make_interpolant(), "velocity").predict(
            "x1", torch.zeros(2, 1), torch.full((2,), 0.5))


def test_score_field_of_an_interpolant_denoiser():
    si = make_interpolant("linear", gamma="sqrt")
    model = ModelWrapper(lambda x, t: x, si, "denoiser")
    x, t = _points()
    score = model.as_field("score")(x, t)
    torch.testing.assert_close(score, si.denoiser_to_score(x, t))
    assert model.nfe == 1


def test_euler_reports_the_denoised_prediction_in_the_callback():
    path = LinearPath()
    model = ModelWrapper(_ideal(path, "velocity"), path, "velocity")
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    seen = []
    res = integrate(model, x0, Euler(), steps=4, callback=lambda d: seen.append(d))
    assert res.nfe == model.nfe == 4
    first = seen[0]
    t0 = torch.zeros(64, dtype=torch.float64)
    torch.testing.assert_close(first["denoised"], GMM.posterior_mean(x0, t0, path))
    assert all(d["denoised"] is not None for d in seen)


@pytest.mark.parametrize("new", [VPPath("cosine"), VPPath("linear"), EDMPath()], ids=repr)
def test_schedule_transform_is_the_exact_field_of_the_new_path(new):
    """Re-timing the exact linear-path model onto ``new`` gives the exact field on ``new``."""
    base = LinearPath()
    inner = ModelWrapper(_ideal(base, "velocity"), base, "velocity")
    retimed = ScheduleTransform(inner, new)
    x, r = _points(seed=2)
    torch.testing.assert_close(retimed(x, r), GMM.velocity(x, r, new), rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(retimed.predict("x1", x, r), GMM.posterior_mean(x, r, new),
                               rtol=1e-7, atol=1e-7)
    assert retimed.nfe == inner.nfe == 2


def test_schedule_transform_samples_the_same_endpoint():
    """Integrating the re-timed field from the new path's source gives the same data-end map as
    the original: the ODEs are the same flow up to time change and scaling."""
    base, new = LinearPath(), VPPath("cosine")
    inner = ModelWrapper(_ideal(base, "velocity"), base, "velocity")
    retimed = ScheduleTransform(inner, new, t_clamp=1e-4)
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ctl = PIController(rtol=1e-8, atol=1e-8)
    a = integrate(inner, x0, Dopri5(), controller=ctl)
    b = integrate(retimed, x0, Dopri5(), t0=1e-4, t1=1 - 1e-4, controller=ctl)
    # both start from N(0, I) at the noise end (σ = 1 at t = 0 for both paths)
    assert a.converged and b.converged
    assert float((a.x - b.x).abs().max()) < 5e-3


def test_schedule_transform_needs_affine_paths():
    si = make_interpolant()
    with pytest.raises(InputError, match="affine"):
        ScheduleTransform(ModelWrapper(lambda x, t: x, si, "velocity"), LinearPath())
