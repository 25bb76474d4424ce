"""LayerDiffusion's latent transparency: the zero-initialised offset starts at the identity, the
offset is in posterior-std units, the frozen autoencoder never moves, the padding and the
metrics have their closed forms, and bad input raises one InputError."""

import math

import pytest
import torch

from monge.data.procedural import load_procedural, premultiply
from monge.errors import InputError
from monge.latent import Autoencoder, AutoencoderConfig
from monge.latent.transparency import (
    LatentTransparency,
    TransparencyEncoder,
    TransparencyLoss,
    alpha_iou,
    evaluate_transparency,
    frozen_flow_loss_gap,
    latent_shift,
    pad_colour,
    train_transparency,
)


@pytest.fixture(scope="module")
def sprites():
    return load_procedural("sprites16", n_train=64, n_test=32, seed=0)


def _vae(variational=True, seed=0) -> Autoencoder:
    torch.manual_seed(seed)
    return Autoencoder(AutoencoderConfig(image_shape=(3, 16, 16), latent_channels=4,
                                         downsample=4, width=4, blocks=0,
                                         variational=variational)).eval()


def _model(seed=0, **kw) -> LatentTransparency:
    vae = kw.pop("vae", None) or _vae(seed=seed)
    torch.manual_seed(seed + 1)
    return LatentTransparency(vae, width=kw.pop("width", 4), **kw)


def _randomise_offset(model: LatentTransparency, seed=0) -> None:
    """Give E_a's zero-initialised last layer non-zero weights (a trained E_a's stand-in)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.encoder.out.weight.copy_(0.1 * torch.randn(model.encoder.out.weight.shape,
                                                         generator=g))
        model.encoder.out.bias.copy_(0.1 * torch.randn(model.encoder.out.bias.shape,
                                                       generator=g))


def test_zero_init_gives_the_posterior_mean_exactly_and_zero_identity_loss(sprites):
    model = _model(output_scale=300.0)
    rgba = sprites.train[:8]
    enc = model.encode(rgba)
    mean, std = model.autoencoder.encode_dist(premultiply(rgba))
    assert torch.equal(enc.offset, torch.zeros_like(enc.offset))
    assert torch.equal(enc.latent, mean) and torch.equal(enc.mean, mean)
    assert torch.equal(enc.std, std)
    terms = TransparencyLoss(1.0).terms(model, rgba)
    assert torch.equal(terms.identity, torch.zeros(8))
    assert torch.allclose(terms.total, terms.reconstruction)
    # the gradient reaches the zero-initialised layer (training can leave the identity)
    terms.total.mean().backward()
    assert model.encoder.out.weight.grad.abs().sum() > 0


def test_offset_is_in_posterior_std_units():
    """Doubling the VAE's posterior std (log-std bias + log 2) doubles x_a − μ and leaves μ;
    a fixed std s gives x_a − μ = s · E_a exactly."""
    vae = _vae()
    model = _model(vae=vae)
    _randomise_offset(model)
    rgba = torch.rand(6, 4, 16, 16) * 2 - 1
    before = model.encode(rgba)
    with torch.no_grad():
        c = vae.latent_shape[0]
        vae.encoder[-1].bias[c:] += math.log(2.0)
    after = model.encode(rgba)
    assert torch.allclose(after.mean, before.mean)
    assert torch.allclose(after.std, 2 * before.std, rtol=1e-5)
    assert torch.allclose(after.latent - after.mean, 2 * (before.latent - before.mean),
                          rtol=1e-4, atol=1e-6)
    assert (before.latent - before.mean).abs().max() > 1e-3

    fixed = LatentTransparency(_vae(variational=False), width=4, fixed_std=0.25)
    _randomise_offset(fixed)
    enc = fixed.encode(rgba)
    assert torch.allclose(enc.latent - enc.mean, 0.25 * enc.offset, atol=1e-7)


def test_output_scale_multiplies_the_offset():
    torch.manual_seed(3)
    small = TransparencyEncoder(4, 4, 4, width=4, output_scale=1.0)
    torch.manual_seed(3)
    large = TransparencyEncoder(4, 4, 4, width=4, output_scale=300.0)
    for enc in (small, large):
        with torch.no_grad():
            enc.out.weight.fill_(0.01)
    x = torch.randn(2, 4, 16, 16)
    assert small(x).shape == (2, 4, 4, 4)
    assert torch.allclose(large(x), 300 * small(x), rtol=1e-5)


def test_training_reduces_reconstruction_and_leaves_the_frozen_vae_untouched(sprites):
    model = _model()
    frozen = {k: v.clone() for k, v in model.autoencoder.state_dict().items()}
    trainable = [p.detach().clone() for p in model.trainable_parameters()]
    loss = TransparencyLoss(1.0)
    with torch.no_grad():
        before = float(loss.terms(model, sprites.test).reconstruction.mean())
    result = train_transparency(model, sprites, steps=15, batch_size=8, lr=1e-2, seed=0)
    with torch.no_grad():
        after = loss.terms(model, sprites.test)
    assert result.steps == 15 and not model.training
    assert float(after.reconstruction.mean()) < 0.5 * before
    assert all(torch.equal(v, model.autoencoder.state_dict()[k]) for k, v in frozen.items())
    assert all(not p.requires_grad for p in model.autoencoder.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(trainable, model.trainable_parameters(),
                                                      strict=True))
    # the offset has left zero, so L_id is now positive but small next to L_rec
    assert float(after.identity.mean()) > 0
    score = evaluate_transparency(model, sprites)
    assert 0 <= score.alpha_iou <= 1 and score.offset_rms > 0
    assert math.isfinite(score.colour_psnr) and score.shift.frechet >= 0


def test_identity_weight_zero_is_the_ablation(sprites):
    model = _model()
    _randomise_offset(model)
    rgba = sprites.train[:4]
    with torch.no_grad():
        on, off = TransparencyLoss(2.0).terms(model, rgba), TransparencyLoss(0.0).terms(model,
                                                                                       rgba)
    assert torch.allclose(on.total, on.reconstruction + 2.0 * on.identity)
    assert torch.allclose(off.total, off.reconstruction) and (on.identity > 0).all()


def test_pad_colour_keeps_opaque_colour_and_fills_from_visible_colour():
    g = torch.Generator().manual_seed(0)
    rgba = torch.rand(3, 4, 16, 16, generator=g) * 2 - 1
    alpha = torch.full((3, 16, 16), -1.0)
    alpha[:, 4:9, 5:11] = 1.0
    alpha[:, 9, 5:11] = 0.0  # a half-covered row
    rgba[:, 3] = alpha
    padded = pad_colour(rgba)
    opaque = alpha == 1
    assert torch.allclose(padded.permute(1, 0, 2, 3)[:, opaque],
                          rgba[:, :3].permute(1, 0, 2, 3)[:, opaque])
    seen = (alpha > -1)[:, None].expand(-1, 3, -1, -1)
    low = torch.where(seen, rgba[:, :3], 9.0).flatten(2).amin(2)
    high = torch.where(seen, rgba[:, :3], -9.0).flatten(2).amax(2)
    assert (padded >= low[..., None, None] - 1e-6).all()
    assert (padded <= high[..., None, None] + 1e-6).all()
    # a constant-colour sprite is unchanged; a fully transparent image is filled with grey 0
    const = rgba.clone()
    const[:, :3] = torch.tensor([0.3, -0.2, 0.9])[None, :, None, None]
    assert torch.allclose(pad_colour(const), const[:, :3], atol=1e-6)
    empty = rgba.clone()
    empty[:, 3] = -1
    assert torch.equal(pad_colour(empty), torch.zeros(3, 3, 16, 16))


def test_premultiply_is_the_papers_convention():
    """I_p = (2·I_c − 1)·I_a with I_c, I_a in [0, 1] equals premultiply on [-1, 1] images."""
    g = torch.Generator().manual_seed(1)
    colour01, alpha01 = torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 1, 4, 4, generator=g)
    rgba = torch.cat([2 * colour01 - 1, 2 * alpha01 - 1], dim=1)
    assert torch.allclose(premultiply(rgba), (2 * colour01 - 1) * alpha01, atol=1e-6)


def test_alpha_iou_latent_shift_and_flow_gap_closed_forms():
    a = torch.tensor([[[[1.0, 1.0], [-1.0, -1.0]]], [[[-1.0, -1.0], [-1.0, -1.0]]]])
    b = torch.tensor([[[[1.0, -1.0], [-1.0, -1.0]]], [[[-1.0, -1.0], [-1.0, -1.0]]]])
    assert torch.allclose(alpha_iou(a, b), torch.tensor([0.5, 1.0], dtype=torch.float64))

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, 2, 2, generator=g)
    d = torch.tensor([0.5, -1.0]).repeat_interleave(4).view(2, 2, 2)
    same, moved = latent_shift(x, x), latent_shift(x + d, x)
    assert abs(same.frechet) < 1e-6 and abs(same.mmd) < 0.01  # unbiased MMD² fluctuates
    assert moved.frechet == pytest.approx(float(d.pow(2).sum()), rel=1e-6)
    spread = float(x.flatten(1).double().var(0).sum())
    assert moved.relative_frechet == pytest.approx(moved.frechet / spread, rel=1e-9)
    assert moved.mmd > 0.1

    def zero_field(z, t):
        return torch.zeros_like(z)

    gap0 = frozen_flow_loss_gap(zero_field, x, x, draws=2)
    assert gap0.increase == 0 and gap0.adjusted_loss == gap0.base_loss
    # zero field, linear path: loss(x1) = mean (x1 − x0)², so shifting x1 by c adds
    # 2c·mean(x1 − x0) + c², whose mean over x0 ~ N(0, 1) is 2c·mean(x) + c²
    c = 0.7
    gap = frozen_flow_loss_gap(zero_field, x + c, x, draws=8, generator=1)
    expected = c * c + 2 * c * float(x.mean())
    assert abs(gap.increase - expected) < 4 * gap.standard_error + 1e-3
    assert gap.relative_increase == pytest.approx(gap.increase / gap.base_loss)


def test_bad_input_raises_one_input_error(sprites):
    model = _model()
    rgb = sprites.train[:2, :3]
    with pytest.raises(InputError, match="rgba"):
        model.encode(rgb)
    with pytest.raises(InputError, match="rgba"):
        model.encode(torch.zeros(2, 4, 8, 8))
    nan = sprites.train[:2].clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        model.encode(nan)
    with pytest.raises(InputError, match="data"):
        train_transparency(model, rgb, steps=1)
    with pytest.raises(InputError, match="data"):
        train_transparency(model, nan, steps=1)
    with pytest.raises(InputError, match="latent"):
        model.decode(torch.zeros(2, 3, 4, 4))
    with pytest.raises(InputError, match="fixed_std"):
        LatentTransparency(_vae(variational=False))
    with pytest.raises(InputError, match="identity_weight"):
        TransparencyLoss(-1.0)
    with pytest.raises(InputError, match="output_scale"):
        TransparencyEncoder(4, 4, 4, output_scale=0.0)
    with pytest.raises(InputError, match="downsample"):
        TransparencyEncoder(4, 4, 3)
    with pytest.raises(InputError, match="alpha"):
        alpha_iou(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4))
    with pytest.raises(InputError, match="adjusted and base"):
        latent_shift(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(InputError, match="adjusted and base"):
        frozen_flow_loss_gap(lambda z, t: z, torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(InputError, match="base"):
        frozen_flow_loss_gap(lambda z, t: z, torch.zeros(4, 3),
                             torch.full((4, 3), float("inf")))
