"""Tests of patch-wise higher-resolution extrapolation (AccDiffusion v2 mechanics)."""

from __future__ import annotations

import math

import pytest
import torch

from monge.data import load_procedural
from monge.data.procedural import render
from monge.editing.extrapolate import (
    EXTRAPOLATION_METHODS,
    ExtrapolationMethod,
    count_objects,
    extrapolate,
    gaussian_smooth,
    kappa,
    permute_sublattices,
    prompt_masks,
    repetition_rate,
    split_sublattices,
    stitch_sublattices,
    unpermute_sublattices,
    window_offsets,
    window_prompts,
)
from monge.errors import InputError

torch.set_num_threads(1)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pointwise_field(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """A linear field acting on each element alone (no spatial coupling)."""
    return -0.7 * x + 0.3 * t[:, None, None, None]


# --- schedule -----------------------------------------------------------------------------------


def test_kappa_endpoints_and_diffusion_time_conversion():
    assert kappa(0.0) == pytest.approx(1.0)
    assert kappa(1.0) == pytest.approx(0.0, abs=1e-15)
    assert kappa(0.5) == pytest.approx(0.5)
    big_t = 1000
    t_d = torch.tensor([0.0, 1.0, 250.0, 999.0, 1000.0], dtype=torch.float64)
    paper = 0.5 * (1 + torch.cos(math.pi * (big_t - t_d) / big_t))
    torch.testing.assert_close(kappa(1 - t_d / big_t), paper)
    # monotone: global branch (c2 = κ) dominates early, local late
    grid = torch.linspace(0, 1, 11)
    assert bool((kappa(grid).diff() < 0).all())
    with pytest.raises(InputError, match="t"):
        kappa(1.5)


# --- dilated sampling ---------------------------------------------------------------------------


@pytest.mark.parametrize("scale,shape", [(2, (2, 3, 8, 12)), (3, (1, 2, 9, 6))])
def test_sublattice_split_and_stitch_are_exact_inverses(scale, shape):
    x = torch.randn(shape, generator=_gen())
    parts = split_sublattices(x, scale)
    assert parts.shape == (scale * scale, shape[0], shape[1], shape[2] // scale,
                           shape[3] // scale)
    for i in range(scale):
        for j in range(scale):
            assert torch.equal(parts[i * scale + j], x[:, :, i::scale, j::scale])
    assert torch.equal(stitch_sublattices(parts, scale), x)
    y = torch.randn(parts.shape, generator=_gen(1))
    assert torch.equal(split_sublattices(stitch_sublattices(y, scale), scale), y)


def test_permutation_and_inverse_cancel_exactly():
    subs = torch.randn(9, 2, 3, 5, 5, generator=_gen())
    permuted, index = permute_sublattices(subs, _gen(1))
    assert torch.equal(unpermute_sublattices(permuted, index), subs)
    # each element position holds a permutation of its s² values ...
    assert torch.equal(permuted.sort(dim=0).values, subs.sort(dim=0).values)
    # ... drawn independently per element (channels included), not one shared permutation
    assert len({tuple(index[:, b, c, i, j].tolist()) for b in range(2) for c in range(3)
                for i in range(5) for j in range(5)}) > 20
    with pytest.raises(InputError, match="index"):
        unpermute_sublattices(permuted, index[:, :1])


def test_smoothing_restandardises_mean_and_std():
    x = 3 * torch.randn(4, 3, 16, 16, generator=_gen()) + 0.5
    smooth = gaussian_smooth(x, 5, 1.0)
    torch.testing.assert_close(smooth.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)))
    torch.testing.assert_close(smooth.std(dim=(1, 2, 3)), x.std(dim=(1, 2, 3)))
    # it does smooth: neighbouring pixels are far more correlated than in white noise
    def lag_corr(z):
        a, b = z[..., :-1].flatten(), z[..., 1:].flatten()
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    assert lag_corr(x) < 0.1 < 0.5 < lag_corr(smooth)
    # σ = 0.01 (the late-time value) leaves the canvas unchanged
    torch.testing.assert_close(gaussian_smooth(x, 3, 0.01), x)
    with pytest.raises(InputError, match="kernel_size"):
        gaussian_smooth(x, 4, 1.0)


# --- windows and patch prompts ------------------------------------------------------------------


def test_window_offsets_half_stride_cover_the_canvas():
    assert window_offsets(32, 16) == [0, 8, 16]
    assert window_offsets(48, 16) == [0, 8, 16, 24, 32]
    assert window_offsets(20, 8) == [0, 4, 8, 12]
    assert window_offsets(21, 8) == [0, 4, 8, 12, 13]


def test_window_prompts_threshold_and_global_labels():
    masks = torch.zeros(1, 2, 16, 16)
    masks[0, 0, :8, :8] = 1            # class 0: the top-left base quadrant
    masks[0, 1, 12:, 12:] = 1          # class 1: a corner covering 1/4 of the last window
    prompts = window_prompts(masks, 2, threshold=0.3)
    assert prompts.shape == (1, 9, 2)
    # windows (row-major over offsets 0, 8, 16): class 0 fills window (0,0), half of (0,8) and
    # (8,0), a quarter of (8,8)
    expected0 = torch.tensor([1, 1, 0, 1, 0, 0, 0, 0, 0], dtype=torch.float32)
    assert torch.equal(prompts[0, :, 0], expected0)
    expected1 = torch.zeros(9)
    assert torch.equal(prompts[0, :, 1], expected1)
    assert torch.equal(window_prompts(masks, 2, threshold=0.25)[0, 8, 1], torch.tensor(1.0))
    # a token outside the global bag never enters a window
    labels = torch.tensor([[0.0, 1.0]])
    assert window_prompts(masks, 2, threshold=0.3, labels=labels).sum() == 0


def test_prompt_masks_threshold_at_mean_and_opening_removes_specks():
    maps = torch.zeros(1, 1, 16, 16)
    maps[0, 0, 3:8, 3:8] = 1.0
    maps[0, 0, 12, 12] = 1.0           # an isolated speck
    masks = prompt_masks(maps)
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[3:8, 3:8] = True
    expected[3, 3] = expected[3, 7] = expected[7, 3] = expected[7, 7] = False  # cross opening
    assert torch.equal(masks[0, 0], expected)
    assert torch.equal(prompt_masks(maps, opening_iterations=0)[0, 0], maps[0, 0] > 0)


# --- the sampler --------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3])
def test_window_averaging_of_a_pointwise_field_equals_the_direct_canvas(scale):
    base = torch.zeros(2, 3, 8, 8)
    direct = extrapolate(pointwise_field, base, scale, 5, method="direct", generator=_gen(3))
    windows = extrapolate(pointwise_field, base, scale, 5, method="multidiffusion",
                          generator=_gen(3))
    assert direct.x.shape == windows.x.shape == (2, 3, 8 * scale, 8 * scale)
    torch.testing.assert_close(windows.x, direct.x, rtol=1e-6, atol=1e-6)


def test_window_averaging_weights_follow_the_region_labels():
    """A field whose output is a per-window constant set by the labels: one Euler step gives
    noise + the average of the constants of the windows covering each pixel."""
    weights = torch.tensor([1.0, 10.0, 100.0])

    def label_field(x, t, y):
        return (y @ weights)[:, None, None, None].expand_as(x).to(x.dtype)

    method = ExtrapolationMethod("windows+labels", windows=True, region_labels=True)
    masks = torch.zeros(1, 3, 8, 8, dtype=torch.bool)
    masks[0, 0] = True
    masks[0, 1, :4, :4] = True
    masks[0, 2, 6:, 6:] = True
    labels = torch.tensor([[1.0, 1.0, 0.0]])
    res = extrapolate(label_field, torch.zeros(1, 3, 8, 8), 2, 1, method=method,
                      generator=_gen(5), region_masks=masks, y=labels)
    eps = torch.randn(1, 3, 16, 16, generator=_gen(5))
    prompts = window_prompts(masks, 2, labels=labels)[0]          # [9, 3]
    expected_sum, counts = torch.zeros(16, 16), torch.zeros(16, 16)
    for n, (i, j) in enumerate((i, j) for i in (0, 4, 8) for j in (0, 4, 8)):
        expected_sum[i:i + 8, j:j + 8] += prompts[n] @ weights
        counts[i:i + 8, j:j + 8] += 1
    torch.testing.assert_close(res.x, eps + expected_sum / counts)
    assert torch.equal(res.window_labels[2][0], prompts)
    assert prompts[0].tolist() == [1.0, 1.0, 0.0] and prompts[8].tolist() == [1.0, 0.0, 0.0]


def test_dilated_step_uses_the_smoothed_input_and_interaction_cancels_for_pointwise_fields():
    base = torch.zeros(2, 3, 8, 8)
    plain = extrapolate(pointwise_field, base, 2, 1, method="dilation-only", generator=_gen(7))
    eps = torch.randn(2, 3, 16, 16, generator=_gen(7))
    # one step at t = 0: κ = 1, σ = 1, kernel 3; the step applies to the un-smoothed canvas
    t0 = torch.zeros(2)
    expected = eps + pointwise_field(gaussian_smooth(eps, 3, 1.0), t0)
    torch.testing.assert_close(plain.x, expected)
    # with a pointwise field the per-element permutation and its inverse cancel exactly
    method = ExtrapolationMethod("dilation+interaction", dilated=True, interaction=True)
    mixed = extrapolate(pointwise_field, base, 2, 4, method=method, generator=_gen(7))
    reference = extrapolate(pointwise_field, base, 2, 4, method="dilation-only",
                            generator=_gen(7))
    torch.testing.assert_close(mixed.x, reference.x)


def test_skip_residual_pulls_towards_the_noised_upsampled_image():
    """With a zero field the canvas moves only through the skip residual."""
    base = torch.randn(1, 3, 8, 8, generator=_gen(1))
    res = extrapolate(lambda x, t, **_: torch.zeros_like(x), base, 2, 4, method="demofusion",
                      generator=_gen(2))
    eps = torch.randn(1, 3, 16, 16, generator=_gen(2))
    up = torch.nn.functional.interpolate(base, size=(16, 16), mode="bicubic",
                                         align_corners=False)
    z = eps
    for t in (0.0, 0.25, 0.5, 0.75):
        c1 = kappa(t) ** 3
        z = (1 - c1) * z + c1 * (t * up + (1 - t) * eps)
    torch.testing.assert_close(res.x, z)


def test_progressive_stages_and_cost_accounting():
    base = torch.zeros(1, 3, 8, 8)
    masks = torch.ones(1, 3, 8, 8, dtype=torch.bool)
    res = extrapolate(pointwise_field, base, 3, 2, method="accdiffusion", generator=_gen(),
                      region_masks=masks, y=torch.ones(1, 3))
    assert sorted(res.stages) == [2, 3] and res.stages[3] is res.x
    assert res.stages[2].shape == (1, 3, 16, 16) and res.x.shape == (1, 3, 24, 24)
    assert res.network_calls == 2 * 2 * 2        # 2 stages x 2 steps x (local + global)
    assert res.base_evaluations == 2 * (9 + 4) + 2 * (25 + 9)
    # a method without the skip residual runs the last stage only
    plain = extrapolate(pointwise_field, base, 3, 2, method="multidiffusion", generator=_gen())
    assert sorted(plain.stages) == [3] and plain.base_evaluations == 2 * 25
    assert set(EXTRAPOLATION_METHODS) == {"direct", "multidiffusion", "demofusion", "dilated",
                                          "interaction", "accdiffusion", "dilation-only"}


def test_bad_input_errors():
    base = torch.zeros(1, 3, 8, 8)
    for scale in (1, 2.5, True, "2"):
        with pytest.raises(InputError, match="scale"):
            extrapolate(pointwise_field, base, scale, 2, method="multidiffusion")
    with pytest.raises(InputError, match="x_base"):
        extrapolate(pointwise_field, torch.zeros(3, 8, 8), 2, 2)
    with pytest.raises(InputError, match="steps"):
        extrapolate(pointwise_field, base, 2, 0, method="demofusion")
    with pytest.raises(InputError, match="method"):
        extrapolate(pointwise_field, base, 2, 2, method="scalecrafter")
    with pytest.raises(InputError, match="region_masks"):
        extrapolate(pointwise_field, base, 2, 2, y=torch.ones(1, 3))
    with pytest.raises(InputError, match="region_masks"):
        extrapolate(pointwise_field, base, 2, 2, y=torch.ones(1, 3),
                    region_masks=torch.ones(1, 3, 4, 4))
    with pytest.raises(InputError, match="y"):
        extrapolate(pointwise_field, base, 2, 2, region_masks=torch.ones(1, 3, 8, 8))
    with pytest.raises(InputError, match="x"):
        split_sublattices(torch.zeros(1, 1, 7, 8), 2)
    with pytest.raises(InputError, match="field"):
        extrapolate(lambda x, t: x[:, :1], base, 2, 1, method="multidiffusion")
    with pytest.raises(InputError, match="interaction"):
        ExtrapolationMethod("bad", windows=True, interaction=True)


# --- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [16, 32])
def test_detector_counts_match_exact_scene_renders(resolution):
    data = load_procedural("scenes16", n_train=1, n_test=300, seed=11)
    factors = data.test_factors
    images = data.test if resolution == 16 else render(factors, resolution)
    counts = count_objects(images)
    accuracy = (counts == factors.count).float().mean().item()
    assert accuracy >= 0.95
    # a trivial baseline (always the most common count) is far worse
    assert (factors.count == factors.count.mode().values).float().mean().item() < 0.5


def test_repetition_rate_of_a_tiled_canvas():
    x = -torch.ones(1, 3, 16, 16)
    x[..., 2:5, 2:5] = 1
    x[..., 9:13, 8:12] = 0.5
    tiled = x.repeat(1, 1, 2, 2)
    assert count_objects(x).tolist() == [2]
    assert repetition_rate(tiled, x).tolist() == [6.0]
    assert repetition_rate(x, x).tolist() == [0.0]
    with pytest.raises(InputError, match="min_area"):
        count_objects(x, min_area=0)
    with pytest.raises(InputError, match="high"):
        repetition_rate(tiled[:, :1], x)
