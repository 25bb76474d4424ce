"""Run configuration: a pydantic schema for ``monge run`` (YAML files and CLI overrides).

Unknown keys and bad values are rejected with one line naming the key (``ConfigError``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from monge.couplings import RUN_COUPLINGS
from monge.errors import ConfigError, InputError
from monge.paths import PATHS
from monge.solvers import SOLVERS, parse_grid

# Names come from the registries, so the schema, the CLI help and the docs cannot drift apart.
PathName = Literal[PATHS.names()]  # type: ignore[valid-type]
CouplingName = Literal[RUN_COUPLINGS]  # type: ignore[valid-type]
SolverName = Literal[SOLVERS.names()]  # type: ignore[valid-type]


class _Strict(BaseModel):
    # strict: `steps: true` or `lr: "fast"` is an error, not a silent coercion to 1 or a guess
    model_config = ConfigDict(extra="forbid", frozen=False, strict=True)


class DataConfig(_Strict):
    n_train: int = Field(20000, ge=16, description="training points drawn for built-in toys")
    n_test: int = Field(4000, ge=8, description="held-out points drawn for built-in toys")
    test_fraction: float = Field(0.3, gt=0, lt=1, description="held-out share of a file/digits")
    normalize: Literal["auto", "standard", "none"] = Field(
        "auto", description="standardise the data per feature (per channel for images) for "
        "training and undo it at sampling; auto: user files and folders only")


class ModelConfig(_Strict):
    kind: Literal["auto", "mlp", "unet", "energy"] = Field(
        "auto", description="auto (unet for images, else mlp) | mlp | unet | energy (an MLP "
        "energy whose output is −∇E: a conservative field)")
    hidden: int = Field(256, ge=4)
    depth: int = Field(3, ge=1)
    time_dim: int = Field(64, ge=2)
    base_channels: int = Field(32, ge=4)
    channel_mults: list[int] = Field(default_factory=lambda: [1, 2])
    conditional: bool = Field(False, description="class-conditional on the target's labels")


class PathConfig(_Strict):
    name: PathName = "linear"
    sigma_min: float | None = Field(None, gt=0)
    sigma_max: float | None = Field(None, gt=0)
    interpolant: Literal["linear", "trigonometric", "encoder-decoder"] = Field(
        "linear", description="I(t, x0, x1) of a stochastic interpolant (path: interpolant)")
    gamma: Literal["sqrt", "quadratic", "sin2", "zero"] = Field(
        "sqrt", description="latent scale γ(t) of a stochastic interpolant")
    gamma_scale: float | None = Field(None, gt=0)
    D: float = Field(128.0, gt=2, description="PFGM++ augmentation dimension (path: pfgmpp); "
                     "use .inf for the EDM limit")

    def kwargs(self) -> dict[str, float]:
        return {k: v for k, v in (("sigma_min", self.sigma_min), ("sigma_max", self.sigma_max))
                if v is not None}


class TrainConfig(_Strict):
    steps: int = Field(5000, ge=1)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(100, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float | None = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    checkpoint_every: int = Field(1000, ge=1)
    log_every: int = Field(25, ge=1)
    time_sampler: Literal["uniform", "logit-normal"] = "uniform"
    prediction: Literal["velocity", "x1", "epsilon"] = "velocity"
    weighting: Literal["none", "snr", "min-snr-5"] = "none"
    cond_dropout: float = Field(0.0, ge=0, lt=1)
    local_reg: float = Field(0.0, ge=0, description="λ of the local regulariser (Pal et al. "
                             "2023): lowers the adaptive solver's NFE at inference; 0 = off")
    smooth_reg: float = Field(0.0, ge=0, description="λ of Smooth Diffusion's step-wise "
                              "variation penalty (Guo et al. 2024); 0 = off")
    local_reg_start: Literal["interpolant", "ode"] = Field(
        "interpolant", description="where its one dopri5 step starts: on the path, or on the "
                                   "model's own ODE solution")


def _check_grid(value: str) -> str:
    try:
        parse_grid(value)
    except InputError as exc:
        raise ValueError(str(exc)) from None
    return value


class SolverSpec(_Strict):
    solver: SolverName
    nfe: list[int] = Field(default_factory=list, description="NFE budgets (fixed-step solvers)")
    rtol: float = Field(1e-5, ge=1e-13, description="adaptive tolerance (>= 1e-13: float64)")
    atol: float = Field(1e-5, ge=1e-13)
    grid: str = Field("uniform", description="time grid: uniform | logsnr | karras[:rho] | "
                                             "shift:S | shift:res")

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: str) -> str:
        return _check_grid(value)

    @model_validator(mode="after")
    def _budgets(self) -> SolverSpec:
        solver = SOLVERS.entry(self.solver).factory
        if not solver.adaptive and not self.nfe:
            raise ValueError(f"solver {self.solver!r} needs a list of nfe budgets")
        if any(n < 1 for n in self.nfe):
            raise ValueError("nfe budgets must be positive")
        if not solver.adaptive and any(n < solver.nfe_per_step for n in self.nfe):
            raise ValueError(f"solver {self.solver!r} spends {solver.nfe_per_step} NFE per step; "
                             f"budgets below that allow no step (got {self.nfe})")
        least = solver().min_steps * solver.nfe_per_step
        if not solver.adaptive and any(n < least for n in self.nfe):
            raise ValueError(f"solver {self.solver!r} is a multistep method that needs at least "
                             f"{least} NFE (got {self.nfe})")
        return self


def _default_solvers() -> list[SolverSpec]:
    return [SolverSpec(solver="euler", nfe=[1, 2, 4, 8, 16, 100]),
            SolverSpec(solver="heun", nfe=[8]), SolverSpec(solver="rk4", nfe=[8]),
            SolverSpec(solver="dopri5")]


class EvalConfig(_Strict):
    n_samples: int = Field(2000, ge=8, description="generated samples per evaluation")
    solvers: list[SolverSpec] = Field(default_factory=_default_solvers)
    sweep_nfe: list[int] = Field(
        default_factory=lambda: [1, 2, 4, 8, 16],
        description="NFE budgets of the report's every-solver table (empty: no table)")
    sweep_samples: int = Field(500, ge=8, description="samples per cell of that table")
    sweep_grid: str = Field("uniform", description="time grid of that table")

    @field_validator("sweep_grid")
    @classmethod
    def _sweep_grid(cls, value: str) -> str:
        return _check_grid(value)
    trajectories: int = Field(128, ge=0, description="trajectories drawn in trajectories.png")
    straightness_steps: int = Field(100, ge=2)
    frechet: bool | None = Field(None, description="classifier Fréchet distance (digits)")


class CompareConfig(_Strict):
    """Extra models trained with other couplings, for the report's comparison table."""

    couplings: list[CouplingName] = Field(
        default_factory=lambda: ["ot"],
        description="couplings to compare with the main model's (empty: no comparison)")
    nfe: list[int] = Field(default_factory=lambda: [1, 2, 4, 100])


DistillMethod = Literal["reflow", "onestep", "meanflow", "shortcut", "consistency", "lcm",
                        "lcm-lora", "mdt"]
DISTILL_METHODS: tuple[str, ...] = DistillMethod.__args__  # type: ignore[attr-defined]


class DistillConfig(_Strict):
    """Few-step students distilled from the main model after training (``monge distill``)."""

    methods: list[DistillMethod] = Field(
        default_factory=lambda: ["consistency"],
        description="student methods (empty: none); each is saved in OUT/students/LABEL")
    steps: int = Field(1000, ge=1, description="training steps per student")
    batch_size: int = Field(256, ge=2)
    lr: float = Field(5e-4, gt=0)
    pairs: int = Field(10000, ge=1, description="reflow/onestep: teacher pairs")
    nfe: list[int] = Field(default_factory=lambda: [1, 2, 4],
                           description="student steps evaluated in the report")
    guidance_range: str = Field("1,3", description="lcm: guidance weights LO,HI learned")
    rank: int = Field(8, ge=1, description="lcm-lora: LoRA rank")

    @field_validator("nfe")
    @classmethod
    def _nfe(cls, value: list[int]) -> list[int]:
        if any(n < 1 for n in value):
            raise ValueError("student NFE must be positive")
        return value

    @field_validator("guidance_range")
    @classmethod
    def _range(cls, value: str) -> str:
        try:
            lo, hi = (float(v) for v in value.split(","))
        except ValueError:
            raise ValueError(f"expected LO,HI, got {value!r}") from None
        if not 0 <= lo <= hi:
            raise ValueError(f"expected 0 <= LO <= HI, got {value!r}")
        return value


class LatentConfig(_Strict):
    """Latent transport: an autoencoder maps the target images to latents, the flow is trained
    between the source and the latents, and every sample is decoded before it is measured."""

    enabled: bool = Field(False, description="train the flow in an autoencoder's latent space")
    autoencoder: str | None = Field(None, description="an autoencoder file (monge.latent); "
                                    "none: one is trained and saved as autoencoder.safetensors")
    steps: int = Field(2000, ge=1, description="autoencoder training steps")
    latent_channels: int = Field(4, ge=1)
    downsample: Literal[1, 2, 4, 8] = 2
    width: int = Field(32, ge=4)
    variational: bool = False
    kl_weight: float = Field(1e-3, ge=0)

    @model_validator(mode="after")
    def _given(self) -> LatentConfig:
        if self.autoencoder is not None and not self.enabled:
            raise ValueError("latent.autoencoder is set but latent.enabled is false")
        return self


class RunConfig(_Strict):
    """Everything ``monge run`` needs. Defaults are the built-in main job."""

    source: str = "8gaussians"
    target: str = "moons"
    seed: int = 0
    out: str = "runs/default"
    coupling: CouplingName = "independent"
    coupling_options: dict[str, Any] = Field(
        default_factory=dict, description="keyword options of the coupling, e.g. {eps: 0.5}")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    path: PathConfig = Field(default_factory=PathConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    latent: LatentConfig = Field(default_factory=LatentConfig)

    @field_validator("out")
    @classmethod
    def _out_folder(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the output folder must not be empty")
        try:
            return str(Path(value).expanduser())
        except RuntimeError:  # "~user" for a user (or home) that does not exist
            raise ValueError(f"cannot expand {value.split('/')[0]!r}: no such home "
                             "directory") from None

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, value: int) -> int:
        if not 0 <= value < 2**63:
            raise ValueError(f"must lie in [0, 2**63), got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        path = PATHS.entry(self.path.name)
        if path.info.get("gaussian_source") and self.source != "gaussian":
            raise ValueError(f"path {self.path.name!r} assumes a Gaussian source; use "
                             "source: gaussian or path: linear")
        fixed = path.info.get("prediction")
        if fixed == "velocity" and self.train.prediction != "velocity":
            raise ValueError(f"path {self.path.name!r} trains the velocity b: use "
                             "train.prediction: velocity")
        if self.train.cond_dropout > 0 and not self.model.conditional:
            raise ValueError("train.cond_dropout needs model.conditional: true")
        if self.latent.enabled and self.source != "gaussian":
            raise ValueError("latent.enabled: a latent flow starts from source: gaussian")
        return self


def _format_error(exc: ValidationError, origin: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{origin}: unknown key '{loc}'"
    msg = err["msg"].removeprefix("Value error, ")
    if not err["loc"]:
        return f"{origin}: {msg}"
    return f"{origin}: invalid value for '{loc}': {msg}"


def parse_config(data: dict[str, Any] | None, origin: str = "config") -> RunConfig:
    """Validate a dict into a :class:`RunConfig` (one-line ``ConfigError`` on failure)."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping at the top level")
    try:
        return RunConfig.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, origin)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML says "last wins")."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (or the defaults when ``path`` is None) and apply dotted overrides."""
    data: dict[str, Any] = {}
    origin = "config"
    if path is not None:
        p = Path(path).expanduser()
        origin = str(p)
        if not p.exists():
            raise ConfigError(f"{p}: config file not found")
        if not p.is_file():
            raise ConfigError(f"{p}: is a folder, not a YAML config file")
        try:
            data = yaml.load(p.read_text(), Loader=_UniqueKeyLoader) or {}
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not a text file") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for depth, key in enumerate(parents):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                where = ".".join(parents[:depth + 1])
                raise ConfigError(f"{origin}: '{where}' is {node!r}, not a mapping, so "
                                  f"--{dotted.split('.')[-1]} cannot set '{dotted}'")
        node[leaf] = value
    return parse_config(data, origin)
