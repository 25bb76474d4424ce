"""monge's diffusion samplers vs diffusers' schedulers on an exact analytic model, side by side.

Model: the exact ε-prediction E[ε | x_t] of a 2-D Gaussian mixture (8 components on the unit
circle, std 0.2) under diffusers' discrete VP schedule (DDPM linear betas 1e-4..0.02, 1000 train
steps). Both libraries step through the *same* ᾱ values with the same initial noise:

- diffusers picks its timesteps k_0 > k_1 > ... > k_{N-1} (``set_timesteps(N)``) and ends in
  ᾱ = 1 (σ = 0: DDIM ``set_alpha_to_one=True``; DPM-Solver/UniPC ``final_sigmas_type="zero"``).
- monge gets the uniform grid t_i = i/N on :class:`DiscreteVPPath`, an ``AffinePath`` whose
  log ᾱ(t) is piecewise linear in t with the knots (t_i, log ᾱ[k_i]) and (1, 0), so α(t_i)² and
  σ(t_i)² are exactly the ᾱ values diffusers uses at its step i (α, σ, α̇, σ̇ in float64).

Comparisons (max |x_monge − x_diffusers| over 4096 samples at NFE 5, 10, 20, float64 state):

- ``fp64``: diffusers with its schedule tables recomputed in float64 (alphas_cumprod, alpha_t,
  sigma_t, lambda_t and, after ``set_timesteps``, ``sigmas``) and, for
  ``DPMSolverMultistepScheduler`` (whose ``step`` casts the sample to float32), the module's
  ``torch.float32`` seen as float64 while it steps (a proxy of the ``torch`` module, restored
  after). This isolates the algorithms: acceptance is ≤ 1e-4 where the algorithm is the same.
- ``shipped``: diffusers exactly as installed (float32 tables; DPM-Solver's update in float32),
  against the same float64 monge run: the float32 floor of diffusers itself.

Also: max error against a reference solution of the probability-flow ODE from the same x_T and
the same starting ᾱ to σ = 0 (monge ``dpmpp-3m`` exact, 1000 steps uniform in λ from the start to
λ = 12 then one step into σ = 0, checked against 2000 steps), and wall time. The analytic model is
cheap, so the time is mostly solver overhead: we time the model calls separately and report the
total and the overhead (total − model time) as monge / diffusers ratios.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/samplers_vs_diffusers.py``
(needs ``pip install diffusers``; torch is not touched.)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_results, markdown_table  # noqa: E402

try:
    import diffusers  # noqa: E402
    from diffusers import (  # noqa: E402
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        UniPCMultistepScheduler,
    )
    from diffusers.schedulers import scheduling_dpmsolver_multistep as _dpm_module  # noqa: E402
except ImportError:  # pragma: no cover - benchmark set-up
    sys.exit("this benchmark needs diffusers: pip install diffusers (it does not touch torch)")

from monge.paths import ModelWrapper  # noqa: E402
from monge.paths.affine import AffinePath  # noqa: E402
from monge.solvers import integrate, make_solver  # noqa: E402

F64 = torch.float64
BETA = dict(beta_start=1e-4, beta_end=0.02, num_train_timesteps=1000, beta_schedule="linear")


# --------------------------------------------------------------------------------------------
# The discrete VP schedule as a monge path
# --------------------------------------------------------------------------------------------
class DiscreteVPPath(AffinePath):
    """VP path through given ᾱ values: log ᾱ(t) piecewise linear in t between knots.

    α = exp(½ log ᾱ), σ = √(−expm1(log ᾱ)); at a knot t_i, α² = ᾱ_i to rounding (the
    interpolation weight is exactly 0 there). α̇ = ½ g α and σ̇ = −α α̇/σ with g the slope of
    log ᾱ on the interval (right derivative at a knot). The last knot may have ᾱ = 1 (σ = 0).
    """

    name = "discrete-vp"

    def __init__(self, knots: torch.Tensor, abar: torch.Tensor):
        self.knots = knots.to(F64)
        self.log_abar = torch.log(abar.to(F64))
        self._cache: dict[float, tuple[torch.Tensor, ...]] = {}
        if not bool((self.knots[1:] > self.knots[:-1]).all()):
            raise ValueError("knots must increase")

    def _interval(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = t.to(F64)
        if t.numel() >= 1:  # one time for the whole batch (the solvers' case): cached
            t_first = t.reshape(-1)[:1]
            if bool((t == t_first).all()):
                key = float(t_first)
                if key not in self._cache:
                    self._cache[key] = self._interval_raw(t_first)
                return tuple(v.expand(t.shape) for v in self._cache[key])
        return self._interval_raw(t)

    def _interval_raw(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = self.knots.numel() - 1
        i = (torch.searchsorted(self.knots, t, right=True) - 1).clamp(0, n - 1)
        k0, k1 = self.knots[i], self.knots[i + 1]
        slope = (self.log_abar[i + 1] - self.log_abar[i]) / (k1 - k0)
        w = t - k0
        log_a = torch.where(t >= self.knots[-1], self.log_abar[-1],
                            self.log_abar[i] + torch.where(w == 0, torch.zeros_like(w),
                                                           w * slope))
        return log_a, slope, i

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(0.5 * self._interval(t)[0])

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((-torch.expm1(self._interval(t)[0])).clamp_min(0.0))

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        log_a, g, _ = self._interval(t)
        return 0.5 * g * torch.exp(0.5 * log_a)

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return -self.alpha(t) * self.d_alpha(t) / self.sigma(t)

    def __repr__(self) -> str:
        return f"DiscreteVPPath({self.knots.numel()} knots)"


# --------------------------------------------------------------------------------------------
# The exact ε-prediction of the mixture
# --------------------------------------------------------------------------------------------
class MixtureEps:
    """E[ε | x_t = x] for x1 ~ Σ_k w_k N(μ_k, s²I), x_t = a·x1 + s_t·ε (closed form, float64)."""

    def __init__(self, k: int = 8, radius: float = 1.0, std: float = 0.2):
        ang = torch.arange(k, dtype=F64) * (2 * math.pi / k)
        self.mu = radius * torch.stack([ang.cos(), ang.sin()], 1)   # [K, 2]
        self.var = std**2
        self.seconds, self.calls = 0.0, 0

    def __call__(self, x: torch.Tensor, a, s) -> torch.Tensor:
        t0 = time.perf_counter()
        a = torch.as_tensor(a, dtype=F64).reshape(-1, 1, 1)
        s = torch.as_tensor(s, dtype=F64).reshape(-1, 1, 1)
        cov = a**2 * self.var + s**2                       # [B|1, 1, 1]
        diff = x[:, None, :] - a * self.mu[None]           # [B, K, 2]
        logp = -0.5 * (diff**2).sum(-1) / cov[..., 0] - torch.log(cov[..., 0])
        r = torch.softmax(logp, dim=1)[..., None]
        eps = (r * s * diff / cov).sum(1)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return eps

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0


def monge_model(eps_fn: MixtureEps, path: DiscreteVPPath) -> ModelWrapper:
    def net(x, t):
        tt = t[:1] if bool((t == t[0]).all()) else t
        return eps_fn(x, path.alpha(tt), path.sigma(tt))
    return ModelWrapper(net, path, "epsilon", t_clamp=0.0)


# --------------------------------------------------------------------------------------------
# diffusers in float64
# --------------------------------------------------------------------------------------------
def abar64() -> torch.Tensor:
    betas = torch.linspace(BETA["beta_start"], BETA["beta_end"], BETA["num_train_timesteps"],
                           dtype=F64)
    return torch.cumprod(1.0 - betas, 0)


class _TorchF64:
    """The torch module with ``float32`` read as float64 (only for diffusers' DPM module)."""

    def __getattr__(self, name):
        return F64 if name == "float32" else getattr(torch, name)


@contextlib.contextmanager
def dpm_in_float64(enabled: bool):
    if not enabled:
        yield
        return
    saved = _dpm_module.torch
    _dpm_module.torch = _TorchF64()
    try:
        yield
    finally:
        _dpm_module.torch = saved


def to_float64(sched, ac: torch.Tensor) -> None:
    """Replace a scheduler's float32 schedule tables by float64 ones (before set_timesteps)."""
    sched.betas = 1.0 - ac / torch.cat([torch.ones(1, dtype=F64), ac[:-1]])
    sched.alphas = 1.0 - sched.betas
    sched.alphas_cumprod = ac.clone()
    if hasattr(sched, "final_alpha_cumprod"):
        sched.final_alpha_cumprod = (torch.tensor(1.0, dtype=F64) if sched.config.set_alpha_to_one
                                     else ac[0].clone())
    if hasattr(sched, "alpha_t"):
        sched.alpha_t = torch.sqrt(ac)
        sched.sigma_t = torch.sqrt(1 - ac)
        sched.lambda_t = torch.log(sched.alpha_t) - torch.log(sched.sigma_t)
        sched.sigmas = ((1 - ac) / ac) ** 0.5


def fp64_sigmas(sched, ac: torch.Tensor) -> None:
    """After set_timesteps: diffusers' σ = √((1 − ᾱ)/ᾱ) at its timesteps in float64 (+ final 0)."""
    ts = sched.timesteps.long()
    sig = ((1 - ac[ts]) / ac[ts]) ** 0.5
    assert sched.config.final_sigmas_type == "zero"
    sched.sigmas = torch.cat([sig, torch.zeros(1, dtype=F64)])


def make_scheduler(kind: str, steps: int, fp64: bool, ac: torch.Tensor):
    if kind.startswith("ddim"):
        spacing = kind.split(":")[1]
        s = DDIMScheduler(**BETA, clip_sample=False, set_alpha_to_one=True, steps_offset=0,
                          timestep_spacing=spacing, prediction_type="epsilon")
    elif "dpm" in kind:
        order = int(kind[-1])
        algo = "sde-dpmsolver++" if "sde" in kind else "dpmsolver++"
        s = DPMSolverMultistepScheduler(**BETA, algorithm_type=algo, solver_order=order,
                                        solver_type="midpoint", lower_order_final=True,
                                        euler_at_final=False, final_sigmas_type="zero",
                                        prediction_type="epsilon", thresholding=False)
    elif kind == "unipc":
        s = UniPCMultistepScheduler(**BETA, solver_order=2, solver_type="bh2", predict_x0=True,
                                    lower_order_final=True, final_sigmas_type="zero",
                                    prediction_type="epsilon", disable_corrector=[])
    else:
        raise ValueError(kind)
    if fp64:
        to_float64(s, ac)
    s.set_timesteps(steps)
    if fp64 and hasattr(s, "sigmas") and not kind.startswith("ddim"):
        fp64_sigmas(s, ac)
    return s


def schedule_abar(kind: str, sched, ac: torch.Tensor) -> torch.Tensor:
    """The ᾱ values diffusers steps through: at each timestep, then the final ᾱ = 1."""
    ts = sched.timesteps.long()
    if kind.startswith("ddim"):  # check that DDIM's prev_timestep is the next timestep
        stride = sched.config.num_train_timesteps // sched.num_inference_steps
        prev = (ts - stride).tolist()
        assert prev[:-1] == ts[1:].tolist() and prev[-1] < 0, (ts.tolist(), prev)
    return torch.cat([ac[ts], torch.ones(1, dtype=F64)])


def run_diffusers(kind: str, sched, eps_fn: MixtureEps, x_T: torch.Tensor, ac_model: torch.Tensor,
                  noises: list[torch.Tensor] | None, fp64: bool) -> torch.Tensor:
    x = x_T.clone()
    with dpm_in_float64(fp64 and "dpm" in kind):
        for i, k in enumerate(sched.timesteps):
            ab = float(ac_model[int(k)])
            e = eps_fn(x, ab**0.5, (1.0 - ab) ** 0.5)
            kw = {"variance_noise": noises[i]} if noises is not None else {}
            if kind.startswith("ddim"):
                kw["eta"] = 0.0
            x = sched.step(e, k, x, **kw).prev_sample
    return x


# --------------------------------------------------------------------------------------------
MONGE = {  # diffusers scheduler kind -> list of (monge label, solver name, options)
    "ddim:trailing": [("ddim", "ddim", {})],
    "ddim:leading": [("ddim", "ddim", {})],
    "dpm2": [("dpmpp-2m", "dpmpp-2m", {})],
    "dpm3": [("dpmpp-3m (third_order=diffusers)", "dpmpp-3m", {"third_order": "diffusers"}),
             ("dpmpp-3m (third_order=exact)", "dpmpp-3m", {"third_order": "exact"})],
    "unipc": [("unipc", "unipc", {})],
    "sde-dpm2": [("dpmpp-2m-sde", "dpmpp-2m-sde", {})],
}
LABEL = {"ddim:trailing": "DDIMScheduler(eta=0, trailing)",
         "ddim:leading": "DDIMScheduler(eta=0, leading)",
         "dpm2": "DPMSolverMultistep(dpmsolver++, order 2)",
         "dpm3": "DPMSolverMultistep(dpmsolver++, order 3)",
         "unipc": "UniPCMultistep(bh2, order 2)",
         "sde-dpm2": "DPMSolverMultistep(sde-dpmsolver++, order 2)"}


def reference(eps_fn: MixtureEps, x_T: torch.Tensor, abar_start: float, n: int,
              abar_end: float | None = None) -> torch.Tensor:
    """PF-ODE from (x_T, ᾱ_start) to σ = 0: dpmpp-3m exact, n steps uniform in λ to λ = 12
    (or to ᾱ_end), then one first-order step into σ = 0 (λ-time is schedule-free, so any path
    with these ends will do). With ᾱ_end = the last timestep's ᾱ this is the best any sampler
    ending with diffusers' first-order jump into σ = 0 can do (the 'final-jump floor')."""
    lam0 = 0.5 * math.log(abar_start / (1 - abar_start))
    lam1 = 12.0 if abar_end is None else 0.5 * math.log(abar_end / (1 - abar_end))
    lam = torch.linspace(lam0, lam1, n + 1, dtype=F64)
    abar = torch.cat([torch.sigmoid(2 * lam), torch.ones(1, dtype=F64)])
    abar[0] = abar_start
    if abar_end is not None:
        abar[-2] = abar_end
    knots = torch.linspace(0.0, 1.0, n + 2, dtype=F64)
    path = DiscreteVPPath(knots, abar)
    solver = make_solver("dpmpp-3m", third_order="exact", lower_order_final=False)
    return integrate(monge_model(eps_fn, path), x_T, solver, grid=knots).x


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4096, help="samples")
    ap.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--kinds", nargs="+", default=list(MONGE), choices=list(MONGE))
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ac = abar64()
    eps_fn = MixtureEps()
    x_T = torch.randn(args.n, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    refs: dict[float, torch.Tensor] = {}
    ref_check: dict[float, float] = {}
    floors: dict[tuple[float, float], float] = {}

    def ref_for(abar_start: float) -> torch.Tensor:
        if abar_start not in refs:
            refs[abar_start] = reference(eps_fn, x_T, abar_start, 1000)
            r2 = reference(eps_fn, x_T, abar_start, 2000)
            ref_check[abar_start] = float((refs[abar_start] - r2).abs().max())
        return refs[abar_start]

    def timed(fn):
        best, best_model = float("inf"), 0.0
        for _ in range(args.repeats):
            eps_fn.reset()
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
            if dt < best:
                best, best_model = dt, eps_fn.seconds
        return out, best, best_model

    rows, trows = [], []
    for kind in args.kinds:
        monge_list = MONGE[kind]
        for nfe in args.nfe:
            sched64 = make_scheduler(kind, nfe, True, ac)
            abar = schedule_abar(kind, sched64, ac)
            knots = torch.linspace(0.0, 1.0, nfe + 1, dtype=F64)
            path = DiscreteVPPath(knots, abar)
            stochastic = "sde" in kind
            noises = None
            if stochastic:
                g = torch.Generator().manual_seed(1)
                noises = [torch.randn(x_T.shape, generator=g, dtype=F64) for _ in range(nfe)]
            # diffusers fp64 and as shipped
            xd64, td, tdm = timed(lambda: run_diffusers(
                kind, make_scheduler(kind, nfe, True, ac), eps_fn, x_T, ac, noises, True))
            xd32 = run_diffusers(kind, make_scheduler(kind, nfe, False, ac), eps_fn, x_T, ac,
                                 noises, False)
            ref = None if stochastic else ref_for(float(abar[0]))
            floor = float("nan")
            if ref is not None:
                key = (float(abar[0]), float(abar[-2]))
                if key not in floors:
                    x_floor = reference(eps_fn, x_T, key[0], 1000, key[1])
                    floors[key] = float((x_floor - ref).abs().max())
                floor = floors[key]
            for label, name, opts in monge_list:
                def mrun():
                    o = dict(opts)
                    if stochastic:
                        o["generator"] = torch.Generator().manual_seed(1)
                    return integrate(monge_model(eps_fn, path), x_T, make_solver(name, **o),
                                     grid=knots)
                res, tm, tmm = timed(mrun)
                assert res.nfe == nfe, (label, res.nfe)
                xm = res.x
                d64 = float((xm - xd64).abs().max())
                d32 = float((xm - xd32).abs().max())
                err_m = float("nan") if ref is None else float((xm - ref).abs().max())
                err_d = float("nan") if ref is None else float((xd64 - ref).abs().max())
                rows.append([f"monge {label} vs {LABEL[kind]}", nfe,
                             f"{int(sched64.timesteps[0])}→{int(sched64.timesteps[-1])}→σ=0",
                             f"{d64:.2e}", f"{d32:.2e}",
                             "yes" if d64 <= 1e-4 else "NO",
                             "n/a" if ref is None else f"{err_m:.3e}",
                             "n/a" if ref is None else f"{err_d:.3e}",
                             "n/a" if ref is None else f"{floor:.3e}"])
                trows.append([f"{label} vs {LABEL[kind]}", nfe, f"{1e3 * tm:.2f}",
                              f"{1e3 * td:.2f}", f"{tm / td:.2f}",
                              f"{1e3 * (tm - tmm):.2f}", f"{1e3 * (td - tdm):.2f}",
                              f"{(tm - tmm) / (td - tdm):.2f}"])
                print(rows[-1], trows[-1], flush=True)

    body = [
        "Exact ε-model of an 8-component 2-D mixture (unit circle, std 0.2) under diffusers' "
        "discrete VP schedule (linear betas 1e-4..0.02, 1000 train steps); "
        f"{args.n} samples from one float64 x_T; monge runs on `DiscreteVPPath` (defined in the "
        "benchmark: an `AffinePath` whose ᾱ(t) hits diffusers' ᾱ at each of its timesteps and "
        "ends in ᾱ = 1), uniform t grid, NFE = steps. `fp64`: diffusers' tables recomputed in "
        "float64 and DPMSolverMultistep's internal float32 cast turned into float64 (see the "
        "module docstring); `shipped`: diffusers as installed (float32 tables and DPM "
        "arithmetic). diffusers " + diffusers.__version__ + ". The SDE rows feed diffusers "
        "`variance_noise` = the normal draws monge takes from its generator (same seed, "
        "same order). Error = max |x − x_ref| vs the PF-ODE reference from the same x_T and "
        "starting ᾱ (monge dpmpp-3m exact, 1000 λ-uniform steps to λ = 12, then σ = 0; "
        "|ref1000 − ref2000| = " + ", ".join(f"{v:.1e}" for v in ref_check.values()) + "). "
        "'final-jump floor': the exact ODE solution to the last timestep followed by the "
        "first-order step into σ = 0 that diffusers' rules (and monge's) take there, vs the "
        "reference: the error that no sampler following those rules can beat at that NFE.",
        "",
        markdown_table(["pair", "NFE", "timesteps", "max|Δ| fp64", "max|Δ| shipped",
                        "≤ 1e-4", "monge err vs ref", "diffusers err vs ref",
                        "final-jump floor"], rows),
        "",
        f"Wall time (best of {args.repeats}, ms; the analytic model is cheap, so the totals are "
        "mostly solver overhead; 'overhead' subtracts the time spent inside the model calls; "
        "diffusers = the fp64 run):",
        "",
        markdown_table(["pair", "NFE", "monge ms", "diffusers ms", "ratio m/d",
                        "monge overhead ms", "diffusers overhead ms", "overhead ratio m/d"],
                       trows),
    ]
    text = "\n".join(body)
    if args.no_append:
        print(text)
    else:
        append_results("Samplers vs diffusers (exact GMM under the discrete VP schedule)", text)


if __name__ == "__main__":
    main()
