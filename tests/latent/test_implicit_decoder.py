"""The LIIF implicit decoder and the alignment loss: exact output sizes, the local ensemble's
bilinear weights (against grid_sample), a constant f_θ giving a constant image, translation
equivariance, continuity across cells, cell decoding, chunking, exact area resizing against the
box-filtered renderer, the alignment loss's identities and gradients, and one-line errors."""

import pytest
import torch
import torch.nn.functional as F

from monge.data.procedural import load_procedural
from monge.errors import InputError
from monge.latent import Autoencoder, AutoencoderConfig
from monge.latent.implicit_decoder import (
    AlignmentLoss,
    ImplicitDecoder,
    ImplicitDecoderConfig,
    RenderedScales,
    ScaleBank,
    ScaleTargets,
    alignment_sampler,
    area_resize,
    cross_scale_consistency,
    ensemble_cells,
    evaluate_scales,
    make_cell,
    make_coords,
    train_implicit_decoder,
)
from monge.models import MLP
from monge.paths import LinearPath
from monge.train import FlowMatchingLoss, Trainer, TrainerConfig


@pytest.fixture(scope="module")
def shapes():
    return load_procedural("shapes16", n_train=64, n_test=8, seed=0)


def _decoder(seed=0, latent_channels=4, **kw) -> ImplicitDecoder:
    torch.manual_seed(seed)
    options = {"feature_channels": 4, "hidden": 16, "depth": 3, **kw}
    return ImplicitDecoder(ImplicitDecoderConfig(latent_channels=latent_channels, **options))


def _ae(seed=0) -> Autoencoder:
    torch.manual_seed(seed)
    return Autoencoder(AutoencoderConfig(image_shape=(3, 16, 16), latent_channels=4,
                                         downsample=4, width=4, blocks=0)).eval()


# --- coordinates and the local ensemble ----------------------------------------------------------


def test_coords_are_pixel_centres_in_row_major_order():
    c = make_coords(2, 4)
    assert c.shape == (8, 2)
    assert torch.allclose(c[0], torch.tensor([-0.5, -0.75]))
    assert torch.allclose(c[-1], torch.tensor([0.5, 0.75]))
    assert torch.allclose(c.view(2, 4, 2)[1, 2], torch.tensor([0.5, 0.25]))
    assert torch.allclose(make_cell(2, 4), torch.tensor([1.0, 0.5]))


@pytest.mark.parametrize("size", [(16, 16), (24, 24), (23, 37), (1, 1), (10, 6), 7])
def test_decode_returns_exactly_the_requested_size(size):
    z = torch.randn(2, 4, 4, 4)
    out = _decoder().decode(z, size)
    h, w = (size, size) if isinstance(size, int) else size
    assert out.shape == (2, 3, h, w) and torch.isfinite(out).all()


def test_ensemble_weights_sum_to_one_and_are_bilinear():
    g = torch.Generator().manual_seed(0)
    coords = torch.rand(500, 2, generator=g) * 2 - 1
    coords[:4] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [0.25, 0.25]])
    index, weight = ensemble_cells(coords, (4, 6))
    assert index.shape == (500, 4, 2) and (weight >= 0).all()
    assert torch.allclose(weight.sum(-1), torch.ones(500), atol=1e-6)
    # blending a map with these cells and weights is bilinear interpolation with border
    # padding (an independent reference: grid_sample takes (x, y))
    grid_map = torch.randn(1, 1, 4, 6, generator=g)
    blended = (weight * grid_map[0, 0][index[..., 0], index[..., 1]]).sum(-1)
    reference = F.grid_sample(grid_map, coords.flip(-1)[None, None], mode="bilinear",
                              padding_mode="border", align_corners=False)[0, 0, 0]
    assert torch.allclose(blended, reference, atol=1e-5)


def test_query_at_a_cell_centre_is_that_cells_prediction_alone():
    dec = _decoder()
    z = torch.randn(1, 4, 4, 4)
    centres = make_coords(4, 4)
    index, weight = ensemble_cells(centres, (4, 4))
    assert torch.allclose(weight.max(-1).values, torch.ones(16))
    cell = make_cell(9, 9)
    out = dec.query(z, centres, cell)[0]
    features = F.unfold(dec.feature_map(z), 3, padding=1)[0].T  # [16, C·9], row-major cells
    coord_input = torch.cat([torch.zeros(16, 2), (cell * 2).expand(16, 2)], dim=1)
    manual = dec.body(dec.feature_in(features) + dec.coord_in(coord_input))
    assert torch.allclose(out, manual, atol=1e-5)


def test_constant_f_gives_a_constant_image_at_any_size():
    dec = _decoder()
    last = dec.body[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.3, -0.2, 0.7]))
    z = torch.randn(3, 4, 4, 4)
    for size in [(16, 16), (13, 29)]:
        out = dec.decode(z, size)
        assert torch.allclose(out, torch.tensor([0.3, -0.2, 0.7]).view(1, 3, 1, 1).expand_as(out),
                              atol=1e-6)


def test_shifting_the_feature_map_by_one_cell_translates_the_image():
    dec = _decoder()
    g = torch.Generator().manual_seed(1)
    features = torch.randn(2, 4, 8, 8, generator=g)
    # rows whose 4 cells and their 3×3 neighbourhoods avoid the wrapped and padded border
    q = torch.rand(50, 2, generator=g) * 0.5 - 0.25
    cell = make_cell(20, 20)
    step = 2.0 / 8
    for dim, axis in ((3, 1), (2, 0)):
        shifted = torch.roll(features, -1, dims=dim)  # shifted[..., j] = features[..., j + 1]
        moved = q.clone()
        moved[:, axis] += step
        assert torch.allclose(dec.query_features(shifted, q, cell),
                              dec.query_features(features, moved, cell), atol=1e-5)


def test_local_ensemble_makes_the_image_continuous_across_cells():
    z = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    cell = make_cell(64, 64)
    eps = 1e-4
    # x = 0 is the boundary between the nearest cells of columns 1 and 2
    ys = torch.linspace(-0.9, 0.9, 9)
    left = torch.stack([ys, torch.full_like(ys, -eps)], dim=1)
    right = torch.stack([ys, torch.full_like(ys, eps)], dim=1)
    smooth = _decoder(seed=3)
    jump = (smooth.query(z, left, cell) - smooth.query(z, right, cell)).abs().max()
    nearest = _decoder(seed=3, local_ensemble=False)
    nearest_jump = (nearest.query(z, left, cell) - nearest.query(z, right, cell)).abs().max()
    assert jump < 1e-3 and nearest_jump > 20 * jump


def test_cell_input_changes_the_output_only_with_cell_decoding():
    z = torch.randn(2, 4, 4, 4)
    coords = make_coords(5, 5)
    dec = _decoder()
    assert not torch.allclose(dec.query(z, coords, make_cell(5, 5)),
                              dec.query(z, coords, make_cell(50, 50)), atol=1e-4)
    plain = _decoder(cell_decoding=False)
    assert torch.equal(plain.query(z, coords, None), plain.query(z, coords, make_cell(50, 50)))


def test_chunked_queries_equal_unchunked():
    dec = _decoder()
    z = torch.randn(3, 4, 4, 4)
    coords = torch.rand(3, 41, 2) * 2 - 1
    cell = make_cell(11, 11)
    full = dec.query(z, coords, cell, chunk_size=10_000)
    for chunk in (1, 7, None):
        assert torch.allclose(dec.query(z, coords, cell, chunk_size=chunk), full, atol=1e-6)


# --- resizing and consistency --------------------------------------------------------------------


def test_area_resize_of_a_box_filtered_render_is_the_render(shapes):
    factors = shapes.test_factors[:4]
    base = shapes.spec.render(factors, 16)
    for k in (2, 3):
        assert torch.allclose(area_resize(shapes.spec.render(factors, 16 * k), 16), base,
                              atol=2e-5)
    assert float(cross_scale_consistency(shapes.spec.render(factors, 32), base).max()) < 1e-9
    bicubic = F.interpolate(base, size=(32, 32), mode="bicubic", align_corners=False)
    assert float(cross_scale_consistency(bicubic, base).mean()) > 1e-5


def test_area_resize_preserves_the_mean_at_non_integer_ratios():
    x = torch.randn(2, 3, 24, 17)
    for size in [(16, 16), (7, 40), (24, 17)]:
        y = area_resize(x, size)
        assert y.shape == (2, 3, *size)
        assert torch.allclose(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-5)
    assert torch.allclose(area_resize(x, (24, 17)), x, atol=1e-6)


# --- multi-scale ground truth and training -------------------------------------------------------


def test_sources_pair_each_base_image_with_the_same_scene_at_the_drawn_size(shapes):
    bank = ScaleBank.from_procedural(shapes, (16, 32), n=16)
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(8):
        batch = bank.sample(5, g)
        seen.add(batch.size)
        assert torch.allclose(area_resize(batch.target, 16), batch.base, atol=2e-5)
    assert seen == {(16, 16), (32, 32)}
    batch = RenderedScales(shapes, scale_range=(3.0, 3.0)).sample(4, g)
    assert batch.size == (48, 48)
    assert torch.allclose(area_resize(batch.target, 16), batch.base, atol=2e-5)


def test_training_the_decoder_halves_its_held_out_error_and_leaves_the_encoder_alone(shapes):
    ae = _ae()
    before = {k: v.clone() for k, v in ae.state_dict().items()}
    dec = _decoder(feature_channels=8, hidden=32)
    truth = shapes.spec.render(shapes.test_factors, 24)

    def held_out_l1() -> float:
        with torch.no_grad():
            return float((dec.decode(ae.encode(shapes.test), 24) - truth).abs().mean())

    untrained = held_out_l1()
    bank = ScaleBank.from_procedural(shapes, (16, 24))
    train_implicit_decoder(dec, ae, bank, steps=40, batch_size=8, queries=32, lr=5e-3, seed=0)
    assert all(torch.equal(v, ae.state_dict()[k]) for k, v in before.items())
    assert held_out_l1() < 0.5 * untrained
    assert not dec.training


# --- the alignment loss --------------------------------------------------------------------------


def _batch(n=6, size=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0, x1 = torch.randn(n, 4, 4, 4, generator=g), torch.randn(n, 4, 4, 4, generator=g)
    return x0, x1, ScaleTargets(torch.rand(n, 3, size, size, generator=g) * 2 - 1)


def test_alignment_with_zero_weight_is_flow_matching():
    x0, x1, y1 = _batch()
    model = MLP(64, hidden=16, depth=1, time_dim=8)
    ours = AlignmentLoss(_decoder(), 0.0)(model, x0, x1, y1, torch.Generator().manual_seed(3))
    theirs = FlowMatchingLoss(LinearPath())(model, x0, x1, None, torch.Generator().manual_seed(3))
    assert torch.allclose(ours.loss, theirs.loss) and torch.equal(ours.t, theirs.t)


def test_alignment_decodes_the_clean_prediction_x_t_plus_one_minus_t_times_v():
    """An oracle velocity x1 − x0 has zero flow-matching loss and ẑ1 = x1 exactly, so L_align
    is the decoder's error on the true latents (all pixels queried)."""
    x0, x1, y1 = _batch()
    dec = _decoder()

    class Oracle(torch.nn.Module):
        def forward(self, x, t):
            return x1 - x0

    loss = AlignmentLoss(dec, 2.0, queries=None, latent_scale=0.5)
    out = loss(Oracle(), x0, x1, y1, torch.Generator().manual_seed(0))
    expected = (dec.decode(x1 * 0.5, 10) - y1.images).abs().mean()
    assert loss.last.flow < 1e-10
    assert abs(loss.last.align - float(expected)) < 1e-5
    assert torch.allclose(out.loss, 2.0 * expected, atol=1e-5)


def test_alignment_gradients_reach_the_flow_but_not_the_frozen_decoder():
    x0, x1, y1 = _batch()
    dec = _decoder()
    model = MLP(64, hidden=16, depth=1, time_dim=8)
    grads = {}
    for weight in (0.0, 1.0):
        model.zero_grad()
        AlignmentLoss(dec, weight)(model, x0, x1, y1, torch.Generator().manual_seed(1)
                                   ).loss.backward()
        grads[weight] = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert all(p.grad is None and not p.requires_grad for p in dec.parameters())
    assert (grads[1.0] - grads[0.0]).abs().max() > 1e-6


def test_trainer_with_alignment_updates_the_flow_and_keeps_the_decoder(shapes):
    ae, dec = _ae(), _decoder()
    frozen = {k: v.clone() for k, v in dec.state_dict().items()}
    model = MLP(64, hidden=16, depth=1, time_dim=8)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    sampler = alignment_sampler(ae, ScaleBank.from_procedural(shapes, (16, 20), n=16))
    loss = AlignmentLoss(dec, 1.0, queries=16)
    Trainer(model, loss, sampler, TrainerConfig(steps=3, batch_size=4, warmup_steps=0,
                                                checkpoint_every=10**9), progress=False).fit()
    assert all(torch.equal(v, dec.state_dict()[k]) for k, v in frozen.items())
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in start.items())
    assert loss.last is not None and loss.last.align > 0
    assert not dec.training


def test_evaluate_scales_marks_the_training_set_and_is_consistent_at_the_base(shapes):
    ae, dec = _ae(), _decoder()
    result = evaluate_scales(dec, ae, shapes, [16, 24], n=4, training_sizes=[16])
    by = result.by_size()
    assert set(by) == {16, 24} and result.images == 4
    assert by[16].in_training and not by[24].in_training and by[24].scale == 1.5
    assert by[16].consistency == 0.0 and by[24].consistency > 0.0


# --- bad input -----------------------------------------------------------------------------------


def test_bad_input_raises_one_clear_error(shapes):
    dec = _decoder()
    z = torch.randn(1, 4, 4, 4)
    cases = [
        (lambda: dec.decode(z, 0), "size"),
        (lambda: dec.decode(z, (3,)), "size"),
        (lambda: dec.decode(z, 2.5), "size"),
        (lambda: dec.decode(torch.randn(1, 3, 4, 4), 8), "z"),
        (lambda: dec.decode(torch.full((1, 4, 4, 4), float("nan")), 8), "z"),
        (lambda: dec.query(z, torch.full((3, 2), 1.5), make_cell(4, 4)), "coords"),
        (lambda: dec.query(z, torch.zeros(3, 3), make_cell(4, 4)), "coords"),
        (lambda: dec.query(z, torch.zeros(2, 3, 2), make_cell(4, 4)), "coords"),
        (lambda: dec.query(z, torch.zeros(3, 2)), "cell"),
        (lambda: dec.query(z, torch.zeros(3, 2), -make_cell(4, 4)), "cell"),
        (lambda: dec.query(z, torch.zeros(3, 2), make_cell(4, 4), chunk_size=0), "chunk_size"),
        (lambda: ImplicitDecoderConfig(latent_channels=4, depth=1), "depth"),
        (lambda: make_coords(0, 3), "height"),
        (lambda: AlignmentLoss(dec, -1.0), "weight"),
        (lambda: AlignmentLoss(dec, 1.0, norm="l3"), "norm"),
        (lambda: AlignmentLoss(dec, 1.0)(MLP(64, hidden=8, depth=1), *_batch()[:2], None),
         "y1"),
        (lambda: AlignmentLoss(dec, 1.0)(MLP(64, hidden=8, depth=1), *_batch()[:2],
                                         ScaleTargets(torch.zeros(2, 3, 8, 8))), "y1.images"),
        (lambda: RenderedScales(shapes, scale_range=(2.0, 1.0)), "scale_range"),
        (lambda: ScaleBank(shapes.train, {16: shapes.test}), "targets"),
        (lambda: train_implicit_decoder(_decoder(latent_channels=2), _ae(), shapes, steps=1),
         "decoder"),
    ]
    for fn, name in cases:
        with pytest.raises(InputError, match=name):
            fn()


def test_save_load_round_trip_is_exact_and_refuses_other_files(tmp_path):
    from monge.errors import DataError
    from monge.latent import load_implicit_decoder, save_implicit_decoder

    torch.manual_seed(0)
    dec = ImplicitDecoder(ImplicitDecoderConfig(latent_channels=4, out_channels=3,
                                                feature_channels=8, hidden=16, depth=3))
    save_implicit_decoder(dec, tmp_path / "d.safetensors")
    back = load_implicit_decoder(tmp_path / "d.safetensors")
    assert back.config == dec.config
    z = torch.randn(2, 4, 4, 4)
    assert torch.equal(back.decode(z, (13, 21)), dec.decode(z, (13, 21)))
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    for bad in ("bad.safetensors", "missing.safetensors"):
        with pytest.raises(DataError, match=bad.split(".")[0]):
            load_implicit_decoder(tmp_path / bad)
