"""Text2PDE-style latent flow: whole Burgers trajectories generated in one shot from text or u0.

Zhou et al., "Text2PDE: Latent Diffusion Models for Accessible Physics Simulation" (ICLR 2025,
arXiv:2410.01153), at CPU scale (spec §3), with flow matching in place of DDPM (spec §5). The
networks live in :mod:`monge.sciml.text2pde_nets`; this module trains and measures them:

1. ``GridAutoencoder`` — a 2-D conv autoencoder over (time, space), periodic in space, maps a
   32 × 64 trajectory to a 4 × 8 × 8 latent (8× compression); trained first on the
   reconstruction MSE, then frozen. Its reconstruction error is the accuracy floor.
2. ``LatentFlowNet`` — a residual conv net on the latent grid, trained by flow matching on the
   linear path (``monge.paths.LinearPath``, velocity target) from N(0, I) to the scaled latents
   (scale = 1/std, spec §4). Conditioning (added to the time embedding in every block, FiLM
   style, and for the initial state also as spatially aligned input channels):

   - ``"initial"``: the initial frame u(·, 0) and the viscosity (the PDE's one parameter,
     without which u0 does not determine the trajectory);
   - ``"text"``: the templated descriptor (``"viscosity 0.012, 2 waves, amplitude 0.8"``),
     tokenised over a tiny word + digit vocabulary (``DescriptorTokenizer``) and encoded by a
     2-layer transformer (``DescriptorEncoder``) trained jointly with the flow.
3. Sampling integrates the velocity with a monge solver (Heun by default) through
   :class:`~monge.paths.ModelWrapper`, then decodes.

Baselines: an autoregressive next-frame network (``RolloutNet``, 1-D periodic conv, residual
update, same data, rolled out 31 frames) and the AE floor (encode → decode of the true
trajectory). All three networks train with :class:`monge.train.Trainer` (AdamW, warm-up +
cosine, clipping, EMA for the flow). Errors are relative L2 over the predicted frames 1..T−1
against the spectral reference, averaged over test trajectories.

Cost: sampling is ``steps × NFE/step`` latent-net calls plus one decode per batch; training
is dominated by the autoencoder. A spectral solver is far cheaper on this 1-D problem (spec §4);
the point is the mechanism, not speed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from monge.couplings import IndependentCoupling
from monge.errors import InputError
from monge.paths import LinearPath, ModelWrapper
from monge.sciml.text2pde_data import (
    BurgersTrajectories,
    amplitude_of,
    burgers_pseudo_spectral,
    dominant_wavenumber,
    estimate_viscosity,
)
from monge.sciml.text2pde_nets import (
    CONDITIONS,
    DescriptorTokenizer,
    GridAutoencoder,
    LatentFlowNet,
    RolloutNet,
)
from monge.solvers import Euler, Heun, integrate
from monge.train import Trainer, TrainerConfig, UniformTime
from monge.train.losses import LossOutput, paired_batch

__all__ = ["ConditionalFlowLoss", "Text2PDEConfig",
           "MethodResult", "ConditioningCheck", "Text2PDEResult", "Text2PDEModels",
           "train_text2pde", "evaluate_text2pde", "run_text2pde", "trajectory_errors",
           "sample_trajectories", "generate_from_text"]

SOLVERS = {"heun": Heun, "euler": Euler}


# --- losses for monge's Trainer ------------------------------------------------------------------
class ConditionalFlowLoss(nn.Module):
    """Flow matching on the linear path with the condition carried in the batch's ``y1`` slot.

    ``model(x_t, t, cond=y1)`` regresses the path's velocity ``x1 - x0`` (Lipman et al. 2023)
    at t ~ U[0, 1]. Same objective as :class:`~monge.train.FlowMatchingLoss` with target
    ``velocity``; it differs only in passing a tensor condition instead of class labels.
    """

    def __init__(self):
        super().__init__()
        self.path, self.coupling, self.times = LinearPath(), IndependentCoupling(), UniformTime()

    def forward(self, model: nn.Module, x0: Tensor, x1: Tensor, y1: Tensor | None = None,
                generator: torch.Generator | None = None) -> LossOutput:
        pairing, t = paired_batch(self.coupling, self.times, x0, x1, y1, generator)
        xt = self.path.sample_xt(pairing.x0, pairing.x1, t)
        target = self.path.target("velocity", pairing.x0, pairing.x1, t)
        per = (model(xt, t, cond=pairing.y1) - target).pow(2).flatten(1).mean(1)
        return LossOutput(per.mean(), per.detach(), t)


class _ReconstructionLoss(nn.Module):
    def forward(self, model, x0, x1, y1=None, generator=None) -> LossOutput:
        per = (model(x1) - x1).pow(2).flatten(1).mean(1)
        return LossOutput(per.mean(), per.detach(), torch.zeros_like(per))


class _OneStepLoss(nn.Module):
    def forward(self, model, x0, x1, y1=None, generator=None) -> LossOutput:
        per = (model(x0, y1) - x1).pow(2).flatten(1).mean(1)
        return LossOutput(per.mean(), per.detach(), torch.zeros_like(per))


# --- configuration and results -------------------------------------------------------------------
@dataclass
class Text2PDEConfig:
    """Sizes and budgets of the Text2PDE experiment (defaults: the CLI's tiny run).

    Attributes:
        conditions: which latent flows to train (``"initial"``, ``"text"``).
        ae_steps, flow_steps, rollout_steps: optimisation steps of each network
            (``rollout_steps=0`` skips the rollout baseline).
        batch_size: examples per step (all three networks).
        lr: peak AdamW learning rate.
        ae_width, flow_width, flow_depth, rollout_width: network sizes.
        sample_steps: solver steps when sampling the flow.
        solver: ``"heun"`` (2 NFE/step) or ``"euler"``.
        ema_decay: EMA of the flow weights used for sampling.
        seed: seed of initialisation, batches and sampling noise.
    """

    conditions: tuple[str, ...] = CONDITIONS
    ae_steps: int = 600
    flow_steps: int = 600
    rollout_steps: int = 600
    batch_size: int = 32
    lr: float = 2e-3
    ae_width: int = 16
    flow_width: int = 64
    flow_depth: int = 4
    rollout_width: int = 64
    sample_steps: int = 20
    solver: str = "heun"
    ema_decay: float = 0.995
    seed: int = 0

    def __post_init__(self) -> None:
        self.conditions = tuple(self.conditions)
        bad = [c for c in self.conditions if c not in CONDITIONS]
        if bad:
            raise InputError(f"conditions: unknown {bad}; expected some of {CONDITIONS}")
        if self.solver not in SOLVERS:
            raise InputError(f"solver: expected one of {sorted(SOLVERS)}, got {self.solver!r}")
        for name in ("ae_steps", "flow_steps", "batch_size", "sample_steps"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if self.rollout_steps < 0:
            raise InputError(f"rollout_steps: expected >= 0 (0 skips the baseline), got "
                             f"{self.rollout_steps}")


@dataclass
class MethodResult:
    """One method on the test set.

    Attributes:
        relative_l2: mean over test trajectories of ||pred − ref|| / ||ref|| on frames 1..T−1.
        error_vs_time: the same per frame (frame 0 is 0 for methods given u0).
        seconds_per_sample: generation (or solve) time per trajectory.
        train_seconds: training time of the networks the method needs (0 for the reference).
        parameters: trainable parameters (0 for a classical solver).
        samples: the first few predicted trajectories ``[k, frames, points]`` (for plots).
    """

    relative_l2: float
    error_vs_time: list[float]
    seconds_per_sample: float
    train_seconds: float
    parameters: int
    samples: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0, 0)))


@dataclass
class ConditioningCheck:
    """Whether text-conditioned samples obey their descriptors (spec §3: physical consistency).

    Attributes:
        viscosity_relative_error: median |ν̂ − ν| / ν, ν̂ from :func:`estimate_viscosity` of each
            generated sample and ν from its descriptor.
        viscosity_log_correlation: Pearson correlation of log ν̂ with log ν over the test set.
        viscosity_within_20pct: fraction of samples with |ν̂ − ν| / ν <= 0.2.
        reference_viscosity_error: the same median on the reference trajectories (the
            estimator's own error).
        waves_accuracy: fraction whose dominant wavenumber equals the descriptor's waves.
        amplitude_error: median |max|u(·, 0)| − A|.
        nu, nu_estimated: the descriptor and estimated viscosities per test sample.
    """

    viscosity_relative_error: float
    viscosity_log_correlation: float
    viscosity_within_20pct: float
    reference_viscosity_error: float
    waves_accuracy: float
    amplitude_error: float
    nu: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    nu_estimated: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))


@dataclass
class Text2PDEModels:
    """The trained networks and the normalisation they share."""

    autoencoder: GridAutoencoder
    flows: dict[str, LatentFlowNet]
    rollout: RolloutNet | None
    tokenizer: DescriptorTokenizer
    u_scale: float
    latent_scale: float
    log_nu_mean: float
    log_nu_std: float
    train_seconds: dict[str, float]

    def nu_feature(self, nu: np.ndarray | Tensor, device: torch.device | str = "cpu") -> Tensor:
        """Normalised log-viscosity ``[B]`` (float32)."""
        nu = torch.as_tensor(np.asarray(nu, dtype=np.float64))
        return ((nu.log() - self.log_nu_mean) / self.log_nu_std).float().to(device)

    def condition(self, kind: str, data: BurgersTrajectories,
                  device: torch.device | str = "cpu") -> Tensor:
        """The ``cond`` tensor of ``kind`` for every trajectory of ``data``."""
        if kind == "text":
            return self.tokenizer.encode(data.descriptors, device)
        u0 = torch.as_tensor(data.u[:, 0] / self.u_scale, dtype=torch.float32, device=device)
        return torch.cat([u0, self.nu_feature(data.nu, device)[:, None]], dim=1)


@dataclass
class Text2PDEResult:
    """Outcome of :func:`run_text2pde`.

    Attributes:
        methods: ``latent_flow`` (initial-state conditioned), ``latent_flow_text`` (pointwise
            error against one trajectory: not a meaningful metric for text, spec §4),
            ``rollout``, ``ae_floor``, ``spectral`` (the pseudo-spectral solver on the 64-point
            grid itself, against the refined reference).
        text_check: :class:`ConditioningCheck` of the text-conditioned flow (None if not run).
        nfe: network calls per generated batch of the flow.
    """

    methods: dict[str, MethodResult]
    text_check: ConditioningCheck | None
    nfe: int
    models: Text2PDEModels = field(repr=False)


def trajectory_errors(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-trajectory relative L2 on frames 1..T−1 ``[N]`` and mean per-frame error ``[T]``."""
    pred, ref = np.asarray(pred, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape or pred.ndim != 3:
        raise InputError(f"pred, ref: expected equal shapes [N, frames, points], got "
                         f"{pred.shape} and {ref.shape}")
    diff = pred - ref
    total = np.linalg.norm(diff[:, 1:], axis=(1, 2)) / np.maximum(
        np.linalg.norm(ref[:, 1:], axis=(1, 2)), 1e-300)
    per_frame = np.linalg.norm(diff, axis=2) / np.maximum(np.linalg.norm(ref, axis=2), 1e-300)
    return total, per_frame.mean(0)


# --- training ------------------------------------------------------------------------------------
def _trainer_config(cfg: Text2PDEConfig, steps: int, ema: float, seed_offset: int
                    ) -> TrainerConfig:
    return TrainerConfig(steps=steps, batch_size=cfg.batch_size, lr=cfg.lr,
                         warmup_steps=min(50, steps // 10), ema_decay=ema,
                         checkpoint_every=10 ** 9, log_every=max(1, steps), seed=cfg.seed
                         + seed_offset)


def _check_data(data: BurgersTrajectories, name: str) -> None:
    if not isinstance(data, BurgersTrajectories):
        raise InputError(f"{name}: expected BurgersTrajectories, got {type(data).__name__}")
    if data.u.ndim != 3 or not np.isfinite(data.u).all():
        raise InputError(f"{name}: trajectories must be finite [N, frames, points], got shape "
                         f"{data.u.shape}")


def train_text2pde(train: BurgersTrajectories, config: Text2PDEConfig | None = None,
                   device: torch.device | str = "cpu") -> Text2PDEModels:
    """Train the autoencoder, then each requested latent flow, and the rollout baseline.

    Cost: ``ae_steps + Σ flow_steps + rollout_steps`` Trainer steps of ``batch_size``.

    Args:
        train: training trajectories.
        config: :class:`Text2PDEConfig`.
        device: where the networks live.

    Returns:
        :class:`Text2PDEModels`.
    """
    cfg = config or Text2PDEConfig()
    _check_data(train, "train")
    torch.manual_seed(cfg.seed)
    _, frames, points = train.u.shape
    u_scale = float(train.u.std()) or 1.0
    log_nu = np.log(train.nu)
    lmean, lstd = float(log_nu.mean()), float(log_nu.std()) or 1.0
    u = torch.as_tensor(train.u / u_scale, dtype=torch.float32, device=device)
    seconds: dict[str, float] = {}

    ae = GridAutoencoder(frames, points, width=cfg.ae_width).to(device)

    def ae_batch(n: int, g: torch.Generator):
        x = u[torch.randint(0, u.shape[0], (n,), generator=g, device=g.device)]
        return x, x, None

    t0 = time.perf_counter()
    Trainer(ae, _ReconstructionLoss(), ae_batch, _trainer_config(cfg, cfg.ae_steps, 0.0, 1),
            progress=False).fit()
    seconds["autoencoder"] = time.perf_counter() - t0
    ae.eval().requires_grad_(False)
    with torch.no_grad():
        latents = torch.cat([ae.encode(c) for c in u.split(256)])
    latent_scale = 1.0 / float(latents.std())
    latents = latents * latent_scale

    models = Text2PDEModels(ae, {}, RolloutNet(cfg.rollout_width).to(device),
                            DescriptorTokenizer(), u_scale, latent_scale, lmean, lstd, seconds)
    for kind in cfg.conditions:
        net = LatentFlowNet(ae.latent_shape, kind, points=points, width=cfg.flow_width,
                            depth=cfg.flow_depth, vocab_size=models.tokenizer.vocab_size,
                            max_length=models.tokenizer.max_length).to(device)
        cond = models.condition(kind, train, device)

        def flow_batch(n: int, g: torch.Generator, cond=cond):
            idx = torch.randint(0, latents.shape[0], (n,), generator=g, device=g.device)
            x1 = latents[idx]
            x0 = torch.randn(x1.shape, generator=g, device=g.device, dtype=x1.dtype)
            return x0, x1, cond[idx]

        t0 = time.perf_counter()
        trainer = Trainer(net, ConditionalFlowLoss(), flow_batch,
                          _trainer_config(cfg, cfg.flow_steps, cfg.ema_decay, 2), progress=False)
        trainer.fit()
        seconds[f"flow_{kind}"] = time.perf_counter() - t0
        models.flows[kind] = trainer.sampling_model.eval().requires_grad_(False)

    if cfg.rollout_steps == 0:
        models.rollout = None
        return models
    nu_feat = models.nu_feature(train.nu, device)
    x_prev, x_next = u[:, :-1].reshape(-1, points), u[:, 1:].reshape(-1, points)
    nu_pairs = nu_feat[:, None].expand(-1, frames - 1).reshape(-1)

    def step_batch(n: int, g: torch.Generator):
        idx = torch.randint(0, x_prev.shape[0], (n,), generator=g, device=g.device)
        return x_prev[idx], x_next[idx], nu_pairs[idx]

    t0 = time.perf_counter()
    Trainer(models.rollout, _OneStepLoss(), step_batch,
            _trainer_config(cfg, cfg.rollout_steps, 0.0, 3), progress=False).fit()
    seconds["rollout"] = time.perf_counter() - t0
    models.rollout.eval().requires_grad_(False)
    return models


@torch.no_grad()
def sample_trajectories(models: Text2PDEModels, kind: str, cond: Tensor, *, steps: int = 20,
                        solver: str = "heun", generator: torch.Generator | None = None
                        ) -> tuple[np.ndarray, int]:
    """Generate trajectories (physical units) for each row of ``cond``; returns them and NFE.

    Method: z ~ N(0, I) at t = 0, integrate the latent velocity to t = 1 with ``solver``
    (``steps`` steps), undo the latent scale, decode, undo the data scale.
    """
    if kind not in models.flows:
        raise InputError(f"kind: no latent flow trained for {kind!r}; have {sorted(models.flows)}")
    if solver not in SOLVERS:
        raise InputError(f"solver: expected one of {sorted(SOLVERS)}, got {solver!r}")
    net = models.flows[kind]
    device = cond.device
    z0 = torch.randn((cond.shape[0], *models.autoencoder.latent_shape), generator=generator,
                     device=device)
    wrapped = ModelWrapper(net, LinearPath(), "velocity")
    res = integrate(wrapped, z0, SOLVERS[solver](), steps=steps, cond={"cond": cond})
    u = models.autoencoder.decode(res.x / models.latent_scale) * models.u_scale
    return u.double().cpu().numpy(), res.nfe


def generate_from_text(models: Text2PDEModels, descriptors: Sequence[str], *, steps: int = 20,
                       solver: str = "heun", seed: int = 0,
                       device: torch.device | str = "cpu") -> np.ndarray:
    """Trajectories ``[len(descriptors), frames, points]`` generated from text descriptors.

    Example:
        ``generate_from_text(models, ["viscosity 0.01, 2 waves, amplitude 1.0"])`` (an unknown
        word raises :class:`~monge.errors.InputError` naming it).
    """
    if "text" not in models.flows:
        raise InputError("generate_from_text: no text-conditioned flow was trained")
    tokens = models.tokenizer.encode(list(descriptors), device)
    g = torch.Generator(device=device).manual_seed(seed)
    return sample_trajectories(models, "text", tokens, steps=steps, solver=solver,
                               generator=g)[0]


def evaluate_text2pde(models: Text2PDEModels, test: BurgersTrajectories,
                      config: Text2PDEConfig | None = None, keep: int = 4,
                      device: torch.device | str = "cpu") -> Text2PDEResult:
    """Errors of every method on ``test`` and the text-conditioning check.

    Args:
        models: from :func:`train_text2pde`.
        test: test trajectories (the refined spectral reference).
        config: sampling settings (``sample_steps``, ``solver``, ``seed``).
        keep: trajectories kept per method for plots.
        device: where to sample.

    Returns:
        :class:`Text2PDEResult`.
    """
    cfg = config or Text2PDEConfig()
    _check_data(test, "test")
    ref = test.u
    n = len(test)
    g = torch.Generator(device=device).manual_seed(cfg.seed + 10)
    methods: dict[str, MethodResult] = {}

    def add(name: str, pred: np.ndarray, secs: float, train_s: float, params: int) -> None:
        total, per_frame = trajectory_errors(pred, ref)
        methods[name] = MethodResult(float(total.mean()), per_frame.tolist(), secs / n, train_s,
                                     params, pred[:keep])

    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    ae = models.autoencoder
    u = torch.as_tensor(ref / models.u_scale, dtype=torch.float32, device=device)
    ae_params = count(ae)
    nfe = 0
    with torch.no_grad():
        for kind in models.flows:
            cond = models.condition(kind, test, device)
            t0 = time.perf_counter()
            pred, nfe = sample_trajectories(models, kind, cond, steps=cfg.sample_steps,
                                            solver=cfg.solver, generator=g)
            secs = time.perf_counter() - t0
            if kind == "initial":
                pred[:, 0] = ref[:, 0]          # the given state, as for the rollout
            name = "latent_flow" if kind == "initial" else "latent_flow_text"
            add(name, pred, secs, models.train_seconds["autoencoder"]
                + models.train_seconds[f"flow_{kind}"], ae_params + count(models.flows[kind]))
            if kind == "text":
                text_pred = pred
        if models.rollout is not None:
            t0 = time.perf_counter()
            roll = models.rollout.rollout(u[:, 0], models.nu_feature(test.nu, device),
                                          ref.shape[1])
            secs = time.perf_counter() - t0
            add("rollout", roll.double().cpu().numpy() * models.u_scale, secs,
                models.train_seconds["rollout"], count(models.rollout))
        t0 = time.perf_counter()
        recon = torch.cat([ae(c) for c in u.split(256)]).double().cpu().numpy() * models.u_scale
        add("ae_floor", recon, time.perf_counter() - t0, models.train_seconds["autoencoder"],
            ae_params)
    t0 = time.perf_counter()
    spectral = burgers_pseudo_spectral(ref[:, 0], test.nu, test.times, length=test.length)
    add("spectral", spectral, time.perf_counter() - t0, 0.0, 0)

    check = None
    if "text" in models.flows:
        nu_hat = estimate_viscosity(text_pred, test.times, test.length)
        rel = np.abs(nu_hat - test.nu) / test.nu
        ok = np.isfinite(nu_hat) & (nu_hat > 0)
        corr = (float(np.corrcoef(np.log(nu_hat[ok]), np.log(test.nu[ok]))[0, 1])
                if ok.sum() > 2 else math.nan)
        ref_err = np.abs(estimate_viscosity(ref, test.times, test.length) - test.nu) / test.nu
        check = ConditioningCheck(
            viscosity_relative_error=float(np.nanmedian(np.where(ok, rel, np.inf))),
            viscosity_log_correlation=corr,
            viscosity_within_20pct=float(np.mean(np.where(ok, rel, np.inf) <= 0.2)),
            reference_viscosity_error=float(np.nanmedian(ref_err)),
            waves_accuracy=float(np.mean(dominant_wavenumber(text_pred) == test.waves)),
            amplitude_error=float(np.median(np.abs(amplitude_of(text_pred) - test.amplitude))),
            nu=test.nu.copy(), nu_estimated=nu_hat)
    return Text2PDEResult(methods, check, nfe, models)


def run_text2pde(train: BurgersTrajectories, test: BurgersTrajectories,
                 config: Text2PDEConfig | None = None, keep: int = 4,
                 device: torch.device | str = "cpu") -> Text2PDEResult:
    """Train (:func:`train_text2pde`) and evaluate (:func:`evaluate_text2pde`) in one call.

    Example:
        >>> from monge.sciml.text2pde_data import make_burgers_trajectories
        >>> data = make_burgers_trajectories(40, seed=0)
        >>> cfg = Text2PDEConfig(ae_steps=2, flow_steps=2, rollout_steps=2, sample_steps=2)
        >>> res = run_text2pde(data.subset(slice(0, 32)), data.subset(slice(32, 40)), cfg)
        >>> sorted(res.methods)
        ['ae_floor', 'latent_flow', 'latent_flow_text', 'rollout', 'spectral']
    """
    cfg = config or Text2PDEConfig()
    models = train_text2pde(train, cfg, device)
    return evaluate_text2pde(models, test, cfg, keep, device)
