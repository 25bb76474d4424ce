"""Potential-flow traversals: the true Laplacian and wave residual against closed forms, exact
gradient-flow steps and reflections, the JVP term against finite differences, the ablation
switches, the metrics on constructed cases, a short training run above chance, bad input."""

import math

import pytest
import torch
from torch import nn

from monge.editing.potential_flow import (
    FactorRegressor,
    LinearDirections,
    PotentialFlowConfig,
    PotentialFlowLoss,
    PotentialFlowModel,
    Potentials,
    Reconstructor,
    TraversalField,
    factor_specificity,
    laplacian,
    random_directions,
    train_potentials,
    traversal_accuracy,
    traverse,
    wave_residual,
)
from monge.errors import InputError


def _decoder(dim: int = 4, seed: int = 0) -> nn.Module:
    """A small nonlinear generator z [B, dim] -> images [B, 1, 4, 4] (float64)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, 16), nn.Tanh(), nn.Linear(16, 16),
                         nn.Unflatten(1, (1, 4, 4))).double().requires_grad_(False)


class Quadratic(Potentials):
    """u_k(z, t) = ½ zᵀ A_k z + t·b_kᵀ z: ∇u = A_k z + t·b_k, Δu = tr A_k, ∂²u/∂t² = 0."""

    def __init__(self, A: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__(A.shape[-1], A.shape[0], hidden=2)
        self.A, self.b = A, b

    def potential(self, z, k, t):
        ks = torch.as_tensor(k).expand(z.shape[0]) if not isinstance(k, int) else \
            torch.full((z.shape[0],), k)
        t = torch.as_tensor(t, dtype=z.dtype).expand(z.shape[0])
        A, b = self.A[ks], self.b[ks]
        return 0.5 * torch.einsum("bi,bij,bj->b", z, A, z) + t * (b * z).sum(1)


def _quadratic(dim: int = 3, k: int = 2, seed: int = 0) -> Quadratic:
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(k, dim, dim, generator=g, dtype=torch.float64)
    A = 0.1 * (M + M.transpose(1, 2))
    return Quadratic(A, 0.3 * torch.randn(k, dim, generator=g, dtype=torch.float64))


# --- Laplacian and wave residual ---------------------------------------------------------------
def test_laplacian_is_the_trace_not_hessian_times_ones():
    z = torch.randn(5, 3, dtype=torch.float64)
    # u = z0·z1: Hessian has only off-diagonal ones; trace 0, Hessian·ones summed = 2
    assert torch.equal(laplacian(lambda z: z[:, 0] * z[:, 1], z), torch.zeros(5,
                                                                             dtype=torch.float64))
    a = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    lap = laplacian(lambda z: torch.sin(z @ a), z)
    assert torch.allclose(lap, -a.dot(a) * torch.sin(z @ a), atol=1e-12)


def test_hutchinson_laplacian_is_unbiased():
    z = torch.randn(2, 3, dtype=torch.float64)
    A = torch.tensor([[1.0, 0.7, 0.0], [0.7, 2.0, -0.4], [0.0, -0.4, 3.0]],
                     dtype=torch.float64)
    fn = lambda z: 0.5 * torch.einsum("bi,ij,bj->b", z, A, z)
    est = laplacian(fn, z, method="hutchinson", probes=500, generator=0)
    # Rademacher: variance of one probe 2·Σ_{i≠j} A_ij² = 1.3, so SE ≈ 0.05
    assert torch.allclose(est, torch.full((2,), 6.0, dtype=torch.float64), atol=0.25)
    assert not torch.allclose(est, torch.full((2,), 6.0, dtype=torch.float64), atol=1e-9)


def test_wave_residual_closed_form():
    z = torch.randn(7, 3, dtype=torch.float64)
    t = torch.rand(7, dtype=torch.float64) * 4
    a = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    b, c = 1.3, 0.7
    u = lambda z, t: torch.sin(z @ a) * torch.cos(b * t)
    expected = (c ** 2 * a.dot(a) - b ** 2) * torch.sin(z @ a) * torch.cos(b * t)
    assert torch.allclose(wave_residual(u, z, t, c), expected, atol=1e-12)
    # b = c·‖a‖: an exact travelling solution of the wave equation
    assert wave_residual(u, z, t, b / a.norm()).abs().max() < 1e-12
    hutch = wave_residual(u, z, t, c, method="hutchinson", probes=1, generator=0)
    # sin(a·z) has the rank-one Hessian −sin·aaᵀ: one Rademacher probe gives (a·v)² ≠ ‖a‖²
    assert hutch.shape == (7,)


def test_potentials_residual_matches_dense_autograd():
    torch.manual_seed(0)
    P = Potentials(3, 2, hidden=8).double()
    with torch.no_grad():
        P.speed.copy_(torch.tensor([0.6, 1.7]))
    z = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0, 2.5, 4.0], dtype=torch.float64)
    got = P.residual(z, 1, t)
    for i in range(4):
        def u_of(zt):
            return P.potential(zt[None, :3], 1, zt[3:4])[0]
        H = torch.autograd.functional.hessian(u_of, torch.cat([z[i], t[i:i + 1]]))
        expected = H[3, 3] - 1.7 ** 2 * torch.trace(H[:3, :3])
        assert torch.allclose(got[i], expected, atol=1e-10)


# --- traversals ------------------------------------------------------------------------------
def test_traverse_quadratic_matches_analytic_steps():
    P = _quadratic()
    z = torch.randn(4, 3, dtype=torch.float64)
    traj = traverse(P, z, 1, steps=4)
    expected = z
    eye = torch.eye(3, dtype=torch.float64)
    for s in range(4):
        assert torch.allclose(traj[s], expected, atol=1e-12)
        expected = expected @ (eye + P.A[1]).T + s * P.b[1]
    assert torch.allclose(traj[4], expected, atol=1e-12)
    # backwards, by reflection: z_{s+1} = (I − A) z_s − s·b
    back = traverse(P, z, 1, steps=3, reverse=True)
    expected = z
    for s in range(3):
        expected = expected @ (eye - P.A[1]).T - s * P.b[1]
    assert torch.allclose(back[3], expected, atol=1e-12)


def test_reflection_is_exact():
    torch.manual_seed(1)
    P = Potentials(5, 3, hidden=16)
    z = torch.randn(6, 5)
    k = torch.tensor([0, 1, 2, 0, 1, 2])
    back = traverse(P, z, k, steps=3, reverse=True)
    for s in range(3):
        forward = back[s] + P.gradient(back[s], k, float(s))
        assert torch.equal(back[s + 1], 2 * back[s] - forward)
    ahead = traverse(P, z, k, steps=1)
    assert torch.equal(back[1], 2 * z - ahead[1])


def test_linear_and_random_directions():
    lin = LinearDirections(4, 3, step_size=0.25, generator=0)
    assert isinstance(lin, TraversalField)
    z = torch.randn(2, 4)
    traj = traverse(lin, z, 2, steps=3)
    steps = traj.diff(dim=0)
    assert torch.allclose(steps.norm(dim=-1), torch.full((3, 2), 0.25))
    assert torch.allclose(traverse(lin, z, 2, 3, reverse=True)[3] - z, -(traj[3] - z))
    frozen = random_directions(4, 3, step_size=0.5, generator=0)
    assert list(frozen.parameters()) == [] and frozen.vectors().norm(dim=1).allclose(
        torch.full((3,), 0.5))


# --- the loss --------------------------------------------------------------------------------
def _model(dim=4, K=3, seed=0, linear=False):
    torch.manual_seed(seed)
    field = LinearDirections(dim, K, generator=seed) if linear else Potentials(dim, K, hidden=16)
    return PotentialFlowModel(field, Reconstructor((1, 4, 4), K, width=4)).double()


def test_jvp_term_equals_finite_differences_of_G():
    G = _decoder()
    model = _model()
    loss = PotentialFlowLoss(G, PotentialFlowConfig(jvp_batch=None, jvp_clip=1e9))
    z0 = torch.randn(5, 4, dtype=torch.float64)
    terms = loss.terms(model, z0, k=torch.tensor([0, 1, 2, 0, 1]),
                       t_star=torch.tensor([0, 1, 2, 3, 0]),
                       reflect=torch.tensor([False, True, False, True, False]))
    z1, v = terms.z1.detach(), terms.v.detach()
    # v is the potential's gradient at (z1, t*+1)
    assert torch.allclose(v, model.field.gradient(z1, terms.k, (terms.t_star + 1).double()),
                          atol=1e-12)
    eps = 1e-5
    fd = (G(z1 + eps * v) - G(z1 - eps * v)) / (2 * eps)
    assert torch.allclose(terms.jvp_vector.detach(), fd, atol=1e-8)
    assert torch.allclose(terms.jvp, fd.pow(2).flatten(1).sum(1).mean(), rtol=1e-6)


def test_jvp_is_clipped_per_sample():
    G = _decoder()
    model = _model()
    z0 = torch.randn(6, 4, dtype=torch.float64)
    fixed = dict(k=torch.zeros(6, dtype=torch.long), t_star=torch.ones(6, dtype=torch.long),
                 reflect=torch.zeros(6, dtype=torch.bool))
    raw = PotentialFlowLoss(G, PotentialFlowConfig(jvp_clip=1e9)).terms(model, z0, **fixed)
    per = raw.jvp_vector.detach().pow(2).flatten(1).sum(1)
    clip = float(per.median())
    clipped = PotentialFlowLoss(G, PotentialFlowConfig(jvp_clip=clip)).terms(model, z0,
                                                                             **fixed)
    assert torch.allclose(clipped.jvp, per.clamp(max=clip).mean())
    assert clipped.jvp < raw.jvp


def test_loss_pieces_and_ablation_switches():
    G = _decoder()
    z0 = torch.randn(8, 4, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    fixed = dict(k=torch.arange(8) % 3, t_star=torch.arange(8) % 4,
                 reflect=torch.arange(8) % 2 == 0)
    cfg = PotentialFlowConfig(cls_weight=0.7, pde_weight=0.3, jvp_weight=0.2)
    model = _model()
    full = PotentialFlowLoss(G, cfg).terms(model, z0, g, **fixed)
    assert full.pde > 0 and full.ic > 0 and full.jvp > 0
    total = 0.7 * full.cls + 0.3 * (full.ic + full.pde - 0.2 * full.jvp)
    assert torch.allclose(full.loss, total)
    full.loss.backward()
    assert model.field.speed.grad is not None and model.field.speed.grad.abs().sum() > 0

    for flags in (dict(use_pde=False), dict(use_ic=False), dict(use_jvp=False),
                  dict(use_pde=False, use_ic=False)):
        model.zero_grad()
        cfg_off = PotentialFlowConfig(cls_weight=0.7, pde_weight=0.3, jvp_weight=0.2, **flags)
        terms = PotentialFlowLoss(G, cfg_off).terms(model, z0, g, **fixed)
        for name in ("pde", "ic", "jvp"):
            if flags.get(f"use_{name}", True) is False:
                assert float(terms.__dict__[name]) == 0.0
            else:
                assert torch.allclose(terms.__dict__[name], full.__dict__[name])
        assert torch.allclose(terms.cls, full.cls)
        terms.loss.backward()
        if flags.get("use_pde", True) is False:  # speeds enter only through the residual
            assert model.field.speed.grad is None
    # the same pair and classifier: the no-PDE ablation differs only by the dropped terms
    ablation = PotentialFlowLoss(G, PotentialFlowConfig(
        cls_weight=0.7, pde_weight=0.3, jvp_weight=0.2, use_pde=False, use_ic=False)).terms(
        model, z0, g, **fixed)
    assert torch.allclose(full.loss - ablation.loss, 0.3 * (full.ic + full.pde))


def test_pde_on_a_subset_of_the_flow_points():
    G = _decoder()
    model = _model()
    z0 = torch.randn(3, 4, dtype=torch.float64)
    fixed = dict(k=torch.tensor([0, 1, 2]), t_star=torch.tensor([0, 1, 2]),
                 reflect=torch.zeros(3, dtype=torch.bool))
    full = PotentialFlowLoss(G, PotentialFlowConfig()).terms(model, z0, **fixed)
    same = PotentialFlowLoss(G, PotentialFlowConfig(pde_points=15)).terms(model, z0, **fixed)
    assert torch.allclose(full.pde, same.pde) and torch.allclose(full.ic, same.ic)
    # the flow points and their squared residuals, computed independently
    points = traverse(model.field, z0, fixed["k"], steps=5)[:5]
    per_point = torch.stack([model.field.residual(points[s], fixed["k"], float(s)).pow(2)
                             for s in range(5)]).flatten()
    assert torch.allclose(full.pde, per_point.mean())
    one = PotentialFlowLoss(G, PotentialFlowConfig(pde_points=1)).terms(
        model, z0, torch.Generator().manual_seed(3), **fixed)
    assert torch.isclose(per_point, one.pde).any()   # exactly one of the H·B points
    assert torch.allclose(one.ic, full.ic) and torch.allclose(one.loss - one.pde * 1.0,
                                                              full.loss - full.pde)


def test_linear_baseline_needs_the_pde_terms_off():
    G = _decoder()
    model = _model(linear=True)
    z0 = torch.randn(4, 4, dtype=torch.float64)
    with pytest.raises(InputError, match="use_pde"):
        PotentialFlowLoss(G).terms(model, z0, torch.Generator().manual_seed(0))
    terms = PotentialFlowLoss(G, PotentialFlowConfig(use_pde=False, use_ic=False)).terms(
        model, z0, torch.Generator().manual_seed(0))
    terms.loss.backward()
    assert model.field.directions.grad.abs().sum() > 0  # the JVP and CE reach d_k


# --- training and metrics --------------------------------------------------------------------
def test_training_beats_chance():
    torch.manual_seed(0)
    W = torch.randn(16, 4)

    def G(z):  # a linear "decoder" to 1×4×4 images
        return (z @ W.T).reshape(-1, 1, 4, 4)

    def sampler(n, generator):
        return torch.randn(n, 4, generator=generator)

    trained = train_potentials(G, sampler, LinearDirections(4, 3, step_size=1.0, generator=0),
                               config=PotentialFlowConfig(use_pde=False, use_ic=False,
                                                          use_jvp=False),
                               steps=60, batch_size=32, lr=1e-2, seed=0,
                               reconstructor_width=8)
    acc = traversal_accuracy(trained.model, G, sampler, n=300, seed=1)
    assert acc.chance == pytest.approx(1 / 3)
    assert acc.accuracy > 0.8
    assert acc.step_norm == pytest.approx(1.0, rel=1e-5)
    assert trained.history[-1]["cls"] < trained.history[0]["cls"]


def test_factor_specificity_on_constructed_directions():
    G = lambda z: z.reshape(-1, 1, 2, 2)   # images are the latents
    regressor = FactorRegressor((1, 2, 2), 4, width=1)
    regressor.net = nn.Flatten()             # reads the factors exactly (std 1, mean 0)
    lin = LinearDirections(4, 2, step_size=0.5)
    with torch.no_grad():
        lin.directions.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 1.0, 1.0]]))
    sampler = lambda n, g: torch.randn(n, 4, generator=g)
    spec = factor_specificity(lin, G, regressor, sampler, {"a": [0], "b": [1], "cd": [2, 3]},
                              n=10, steps=3)
    # direction 0 moves only "a": 6 steps of 0.5; direction 1 moves "cd" by 0.5/√2 per column
    assert torch.allclose(spec.change, torch.tensor([[3.0, 0, 0], [0, 0, 3 / math.sqrt(2)]]),
                          atol=1e-6)
    assert torch.allclose(spec.specificity, torch.ones(2))
    assert spec.top_factor == ["a", "cd"] and spec.factors_covered == 2
    assert spec.mig == pytest.approx(2 / 3, abs=1e-6)  # groups a, cd: gap 1; b: gap 0
    with torch.no_grad():
        lin.directions.copy_(torch.tensor([[1.0, 1.0, 0, 0], [1.0, 1.0, 0, 0]]))
    mixed = factor_specificity(lin, G, regressor, sampler, {"a": [0], "b": [1], "cd": [2, 3]},
                               n=10, steps=3)
    assert torch.allclose(mixed.specificity, torch.full((2,), 0.5), atol=1e-6)


# --- bad input ---------------------------------------------------------------------------------
def test_bad_input_errors():
    P = Potentials(4, 3, hidden=8)
    z = torch.randn(2, 4)
    with pytest.raises(InputError, match="z"):
        traverse(P, torch.randn(2, 5), 0, 2)
    with pytest.raises(InputError, match="k"):
        traverse(P, z, 3, 2)
    with pytest.raises(InputError, match="steps"):
        traverse(P, z, 0, 0)
    with pytest.raises(InputError, match="potentials|field"):
        traverse(object(), z, 0, 1)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="NaN"):
        P.residual(torch.full((2, 4), float("nan")), 0, 0.0)
    with pytest.raises(InputError, match="method"):
        laplacian(lambda z: z.sum(1), z, method="ones")
    with pytest.raises(InputError, match="fn"):
        laplacian(lambda z: z, z)
    with pytest.raises(InputError, match="speed"):
        wave_residual(lambda z, t: z.sum(1), z, 0.0, torch.ones(3))
    with pytest.raises(InputError, match="half_horizon"):
        PotentialFlowConfig(half_horizon=1)
    with pytest.raises(InputError, match="jvp_clip"):
        PotentialFlowConfig(jvp_clip=0.0)
    with pytest.raises(InputError, match="num_potentials"):
        Potentials(4, 0)
    sampler = lambda n, g: torch.randn(n, 4, generator=g)
    with pytest.raises(InputError, match="use_pde"):
        train_potentials(lambda z: z.reshape(-1, 1, 2, 2), sampler, LinearDirections(4, 2),
                         steps=1)
    with pytest.raises(InputError, match="G"):
        train_potentials(lambda z: z, sampler, P, steps=1)
    with pytest.raises(InputError, match="latent_sampler"):
        train_potentials(lambda z: z.reshape(-1, 1, 2, 2), lambda n, g: torch.randn(n, 3), P,
                         steps=1)
    with pytest.raises(InputError, match="reconstructor"):
        PotentialFlowModel(P, Reconstructor((1, 2, 2), 2))
