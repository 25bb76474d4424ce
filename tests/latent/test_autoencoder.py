"""The latent autoencoder: shapes, training below the mean-image floor, VAE posterior, exact
safetensors round trips and one-line errors."""

import math

import pytest
import torch

from monge.data.procedural import load_procedural
from monge.errors import DataError, InputError
from monge.latent import (
    Autoencoder,
    AutoencoderConfig,
    AutoencoderLoss,
    check_images,
    load_autoencoder,
    psnr,
    reconstruction_score,
    save_autoencoder,
    train_autoencoder,
)
from monge.train import save_checkpoint


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Convolutions this small train about twice as fast on one thread as on two (thread
    hand-off dominates); the previous setting is restored after this module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shapes():
    return load_procedural("shapes16", n_train=1000, n_test=200, seed=0)


def _tiny(variational=False, downsample=2, seed=0, **kw) -> Autoencoder:
    torch.manual_seed(seed)
    config = AutoencoderConfig(image_shape=(3, 16, 16), latent_channels=4, downsample=downsample,
                               width=8, blocks=kw.pop("blocks", 0), variational=variational,
                               **kw)
    return Autoencoder(config)


@pytest.mark.parametrize("downsample", [2, 4])
@pytest.mark.parametrize("variational", [False, True])
def test_encode_decode_shapes_and_posterior_std(downsample, variational):
    ae = _tiny(variational, downsample, blocks=1)
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    z = ae.encode(x)
    side = 16 // downsample
    assert z.shape == (5, 4, side, side) and ae.latent_shape == (4, side, side)
    assert ae.decode(z).shape == x.shape and torch.equal(ae.reconstruct(x), ae.decode(z))
    mean, std = ae.encode_dist(x)
    assert torch.equal(mean, z)
    if variational:
        assert (std > 0).all() and torch.isfinite(std).all()
    else:
        assert torch.equal(std, torch.zeros_like(z))


def test_psnr_is_ten_log10_of_peak_squared_over_mse():
    x = torch.zeros(3, 1, 4, 4)
    noisy = x + torch.tensor([0.1, 0.2, 1.0])[:, None, None, None]
    expected = torch.tensor([10 * math.log10(4 / 0.01), 10 * math.log10(4 / 0.04),
                             10 * math.log10(4 / 1.0)])
    assert torch.allclose(psnr(noisy, x), expected)
    assert torch.allclose(psnr(noisy, x, peak_to_peak=1.0), expected - 10 * math.log10(4))
    assert psnr(x, x).isinf().all()


def test_short_training_beats_the_mean_image_baseline(shapes):
    """300 steps of a 4k-parameter AE (f = 2, latent 4x8x8) bring the held-out reconstruction
    MSE to at most half that of predicting the mean image (observed: about a third)."""
    ae = _tiny()
    before = reconstruction_score(ae, shapes)
    result = train_autoencoder(ae, shapes, steps=300, batch_size=16, lr=5e-3, seed=0)
    after = reconstruction_score(ae, shapes)
    assert result.steps == 300 and not ae.training
    assert after.mse < after.baseline_mse / 2 < before.mse
    with torch.no_grad():
        recon = ae.reconstruct(shapes.test)
    assert after.psnr == pytest.approx(float(psnr(recon, shapes.test).double().mean()), rel=1e-5)
    assert after.psnr > 10 * math.log10(4 / after.baseline_mse)


def test_vae_loss_is_reconstruction_plus_weighted_kl():
    """The objective against an independent computation: torch.distributions' KL of the
    posterior to N(0, I), and the decoder applied to mean + std * noise with the same noise."""
    ae = _tiny(variational=True, kl_weight=0.05)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    out = AutoencoderLoss()(ae, None, x, None, torch.Generator().manual_seed(3))
    noise = torch.randn((4, *ae.latent_shape), generator=torch.Generator().manual_seed(3))
    mean, std = ae.encode_dist(x)
    recon = ae.decode(mean + std * noise)
    posterior = torch.distributions.Normal(mean, std)
    kl = torch.distributions.kl_divergence(posterior, torch.distributions.Normal(0.0, 1.0))
    expected = (recon - x).pow(2).flatten(1).mean(1) + 0.05 * kl.flatten(1).mean(1)
    assert torch.allclose(out.per_example, expected, rtol=1e-5)
    assert torch.isfinite(out.loss)


def test_vae_trains_with_finite_kl_and_positive_std(shapes):
    ae = _tiny(variational=True)
    result = train_autoencoder(ae, shapes.train, steps=60, batch_size=16, lr=5e-3, seed=1)
    assert math.isfinite(result.final_loss)
    mean, std = ae.encode_dist(shapes.test[:64])
    assert (std > 0).all()
    kl = 0.5 * (mean.pow(2) + std.pow(2) - 1) - std.log()
    assert torch.isfinite(kl).all() and kl.mean() > 0


@pytest.mark.parametrize("variational", [False, True])
def test_save_load_round_trip_is_exact(tmp_path, variational):
    ae = _tiny(variational, downsample=4, blocks=1)
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    path = save_autoencoder(ae, tmp_path / "ae.safetensors")
    loaded = load_autoencoder(path)
    assert loaded.config == ae.config and not loaded.training
    ae.eval()
    assert torch.equal(loaded.encode(x), ae.encode(x))
    assert torch.equal(loaded.encode_dist(x)[1], ae.encode_dist(x)[1])
    assert torch.equal(loaded.reconstruct(x), ae.reconstruct(x))
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary behind


def test_training_is_seeded_and_its_checkpoint_loads(tmp_path, shapes):
    """Same initialisation and seed: the same weights; the trainer checkpoint kept in out_dir
    is an autoencoder file; resuming a finished run changes nothing."""
    data, x = shapes.train[:200], shapes.test[:4]
    first, second = _tiny(seed=4), _tiny(seed=4)
    train_autoencoder(first, data, steps=30, batch_size=8, seed=2, out_dir=tmp_path)
    train_autoencoder(second, data, steps=30, batch_size=8, seed=2)
    assert torch.equal(first.reconstruct(x), second.reconstruct(x))
    loaded = load_autoencoder(tmp_path / "checkpoint.safetensors")
    assert torch.equal(loaded.reconstruct(x), first.reconstruct(x))
    result = train_autoencoder(loaded, data, steps=30, batch_size=8, seed=2, out_dir=tmp_path,
                               resume=True)
    assert result.resumed_from == 30 and torch.equal(loaded.reconstruct(x),
                                                     first.reconstruct(x))
    other = _tiny(seed=4)
    train_autoencoder(other, data, steps=30, batch_size=8, seed=3)
    assert not torch.equal(other.reconstruct(x), first.reconstruct(x))


def test_corrupt_missing_and_foreign_files_are_one_line_data_errors(tmp_path):
    ae = _tiny()
    path = save_autoencoder(ae, tmp_path / "ae.safetensors")
    raw = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    save_checkpoint(tmp_path / "other.safetensors", {"w": torch.zeros(2)}, {"step": 3})
    for name in ("cut", "junk", "missing", "other"):
        with pytest.raises(DataError) as info:
            load_autoencoder(tmp_path / f"{name}.safetensors")
        assert "\n" not in str(info.value) and name in str(info.value)


def test_image_shape_mismatch_is_a_one_line_input_error(shapes):
    ae = _tiny()
    wrong = torch.zeros(4, 1, 8, 8)
    for call in (lambda: train_autoencoder(ae, wrong, steps=1),
                 lambda: ae.encode(wrong), lambda: reconstruction_score(ae, wrong),
                 lambda: check_images(ae, shapes.train[:, :2])):
        with pytest.raises(InputError) as info:
            call()
        assert "\n" not in str(info.value)
        assert "image shape [B, 3, 16, 16]" in str(info.value)
    with pytest.raises(InputError, match="latent shape"):
        ae.decode(torch.zeros(2, 4, 4, 4))
    with pytest.raises(InputError, match="does not divide"):
        AutoencoderConfig(image_shape=(3, 12, 12), downsample=8)
    sprites = load_procedural("sprites16", n_train=8, n_test=4)
    with pytest.raises(InputError, match="data: images of shape"):
        train_autoencoder(ae, sprites, steps=1)
