"""Build a run's parts from its config: data sets, path and method, network, coupling, loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from monge.couplings import make_coupling
from monge.data import DATASET_NAMES, AffineMap, Dataset, load_dataset, standardizer
from monge.errors import ConfigError, InputError
from monge.experiments.config import RunConfig
from monge.experiments.methods import Method, build_method
from monge.models import build_model


def _batched(fn: Any, x: Tensor, size: int = 1024) -> Tensor:
    """fn over chunks of rows, without gradients, on fn's device, back on x's device (in one
    differentiable call when x requires grad, e.g. a steering loss through the decoder)."""
    if x.requires_grad and torch.is_grad_enabled():
        return fn(x.to(torch.float32)).to(x.dtype)
    dev = next(fn.__self__.parameters()).device
    with torch.no_grad():
        return torch.cat([fn(x[i:i + size].to(dev, torch.float32)).to(x.device, x.dtype)
                          for i in range(0, x.shape[0], size)]) if x.shape[0] else x


@dataclass
class DataMaps:
    """Data units ↔ model units: the standardisation of each side (``data.normalize``) and the
    path's own data scale (kinetic-optimal paths train on rescaled data)."""

    source: AffineMap
    target: AffineMap
    data_scale: float = 1.0
    latent: Any = None
    """An autoencoder (:class:`monge.latent.Autoencoder`) between the target images and the
    latents the model transports, or None."""

    def encode_source(self, x: Tensor) -> Tensor:
        return self.source.encode(x)

    def encode_target(self, x: Tensor) -> Tensor:
        if self.latent is not None:
            x = _batched(self.latent.encode, x)
        return self.target.encode(x) * self.data_scale

    def to_latent(self, z: Tensor) -> Tensor:
        """Generated samples (model units) → the autoencoder's latents (a latent model) or the
        target's data units."""
        return self.target.decode(z / self.data_scale)

    def decode(self, z: Tensor) -> Tensor:
        """Generated samples (model units) → target data units (images for a latent model)."""
        x = self.to_latent(z)
        return _batched(self.latent.decode, x) if self.latent is not None else x

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source.to_json(), "target": self.target.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, data_scale: float) -> DataMaps:
        data = data or {}
        return cls(AffineMap.from_json(data.get("source")),
                   AffineMap.from_json(data.get("target")), data_scale)


@dataclass
class Components:
    """Everything built from a config before training."""

    source: Dataset
    target: Dataset
    method: Method
    model: nn.Module
    loss: nn.Module
    num_classes: int | None
    maps: DataMaps
    model_shape: tuple[int, ...] = ()
    """The per-sample shape the model transports (the latent shape of a latent model)."""


def model_kwargs(cfg: RunConfig, shape: tuple[int, ...]) -> tuple[str, dict[str, Any]]:
    kind = cfg.model.kind
    if kind == "auto":
        kind = "unet" if len(shape) == 3 else "mlp"
    if kind in ("mlp", "energy"):
        return kind, {"hidden": cfg.model.hidden, "depth": cfg.model.depth,
                      "time_dim": cfg.model.time_dim}
    return kind, {"base_channels": cfg.model.base_channels,
                  "channel_mults": tuple(cfg.model.channel_mults)}


def _coupling(cfg: RunConfig):
    try:
        return make_coupling(cfg.coupling, **cfg.coupling_options)
    except InputError as exc:
        raise ConfigError(f"coupling_options: {exc}") from None


def build_components(cfg: RunConfig, device: str | torch.device = "cpu",
                     autoencoder: Any = None) -> Components:
    """Load the data sets and build model, path, coupling and loss from ``cfg`` (with
    ``autoencoder``, a latent model: the flow lives on its latents)."""
    target = load_dataset(cfg.target, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                          seed=cfg.seed, test_fraction=cfg.data.test_fraction)
    model_shape = target.shape
    latents = None
    if autoencoder is not None:
        from monge.latent import check_images

        check_images(autoencoder, target.train[:1], f"target {cfg.target!r}")
        model_shape = tuple(autoencoder.latent_shape)
        latents = _batched(autoencoder.encode, target.train)
    source = load_dataset(cfg.source, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                          seed=cfg.seed + 1, test_fraction=cfg.data.test_fraction,
                          shape=model_shape if cfg.source == "gaussian" else None)
    if source.shape != model_shape:
        raise ConfigError(f"source {cfg.source!r} has samples of shape {source.shape} but target "
                          f"{cfg.target!r} has {target.shape}")
    num_classes = None
    if cfg.model.conditional:
        if target.num_classes is None:
            raise ConfigError(f"model.conditional: target {cfg.target!r} has no labels")
        num_classes = target.num_classes
    mode = cfg.data.normalize
    target_map = (standardizer(target.train, mode, builtin=cfg.target in DATASET_NAMES)
                  if latents is None else standardizer(latents, "standard", builtin=True))
    source_map = standardizer(source.train, mode, builtin=cfg.source in DATASET_NAMES)
    torch.manual_seed(cfg.seed)
    # data-dependent paths (kinetic-optimal) are estimated on the standardised target
    scaled = Dataset(target.name, target_map.encode(target.train if latents is None
                                                    else latents), target.test,
                     target.train_labels, target.test_labels, target.num_classes)
    method = build_method(cfg, scaled)
    kind, kwargs = model_kwargs(cfg, model_shape)
    try:
        net = build_model(kind, model_shape, num_classes=num_classes, **kwargs)
    except (RuntimeError, MemoryError) as exc:  # e.g. model.hidden: 10000000
        if "alloc" not in str(exc).lower() and not isinstance(exc, MemoryError):
            raise
        raise ConfigError(f"model: a {kind} with {kwargs} does not fit in memory "
                          f"({str(exc).splitlines()[0][-120:]}); use a smaller model") from None
    model = method.wrap_model(net).to(device)
    loss = method.loss(cfg, _coupling(cfg), num_classes)
    maps = DataMaps(source_map, target_map, method.data_scale, autoencoder)
    return Components(source, target, method, model, loss, num_classes, maps, model_shape)


def batch_sampler(comp: Components, device: torch.device | str):
    source, target = comp.source, comp.target
    labels = target.train_labels
    # Keep data on the training device once, so each step only indexes. Labels travel with the
    # batch whenever the target has them: the loss gives them to a conditional model, and
    # label-aware couplings use them either way.
    src = Dataset(source.name, comp.maps.encode_source(source.train).to(device), source.test,
                  None, None, None)
    tgt = Dataset(target.name, comp.maps.encode_target(target.train).to(device), target.test,
                  None if labels is None else labels.to(device), None, target.num_classes)

    def sample_batch(n: int, g: torch.Generator):
        x1, y1 = tgt.sample(n, g)
        x0, _ = src.sample(n, g)
        return x0, x1, y1
    return sample_batch
