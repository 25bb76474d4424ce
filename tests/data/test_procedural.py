"""Procedural images: exact analytic rendering at any resolution, factors, sprites, counts."""

import math
from dataclasses import replace

import pytest
import torch
from scipy import ndimage

from monge.data.procedural import (
    PROCEDURAL_DATASETS,
    SHAPE_KINDS,
    ProceduralData,
    ProceduralImages,
    SceneFactors,
    composite,
    load_procedural,
    premultiply,
    render,
    render_coverage,
    sample_factors,
)
from monge.errors import InputError


def _one(kind: str, x=0.5, y=0.5, scale=0.3, rotation=0.0, colour=(0.9, 0.6, 0.4),
         background=(0.1, 0.2, 0.0)) -> SceneFactors:
    return SceneFactors(
        kind=torch.tensor([[SHAPE_KINDS.index(kind)]]),
        position=torch.tensor([[[x, y]]], dtype=torch.float64),
        scale=torch.tensor([[scale]], dtype=torch.float64),
        rotation=torch.tensor([[rotation]], dtype=torch.float64),
        colour=torch.tensor([[colour]], dtype=torch.float64),
        background=torch.tensor([background], dtype=torch.float64),
        present=torch.tensor([[True]]))


def _supersampled_coverage(f: SceneFactors, resolution: int, sub: int = 32) -> torch.Tensor:
    """Independent reference: point-in-shape tests on sub x sub points per pixel, averaged."""
    xs = (torch.arange(resolution * sub, dtype=torch.float64) + 0.5) / (resolution * sub)
    grid_x, grid_y = torch.meshgrid(xs, xs, indexing="xy")
    out = []
    for i in range(len(f)):
        kind = SHAPE_KINDS[int(f.kind[i, 0])]
        px, py = f.position[i, 0].double().tolist()
        s, theta = float(f.scale[i, 0]), float(f.rotation[i, 0])
        dx, dy = grid_x - px, py - grid_y                  # y up: counter-clockwise on screen
        u = dx * math.cos(theta) + dy * math.sin(theta)    # rotate the plane by -theta
        v = -dx * math.sin(theta) + dy * math.cos(theta)
        if kind == "disc":
            inside = u * u + v * v <= s * s
        elif kind == "square":
            inside = (u.abs() <= s / math.sqrt(2)) & (v.abs() <= s / math.sqrt(2))
        else:  # equilateral triangle pointing up: inradius s/2 below each vertex direction
            inside = torch.ones_like(u, dtype=torch.bool)
            for a in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3):
                inside &= -(u * math.cos(a) + v * math.sin(a)) <= s / 2
        out.append(torch.nn.functional.avg_pool2d(inside.double()[None, None], sub)[0, 0])
    return torch.stack(out)


def test_coverage_matches_an_independent_supersampled_reference():
    """Analytic coverage vs 32x32 point samples per pixel: a pixel crossed by an edge of
    length L (in pixels) is misestimated by at most about 2L/32 by the reference, so every
    pixel agrees to 0.03 and the mean error is far smaller."""
    f = sample_factors(24, torch.Generator().manual_seed(3))
    exact = render_coverage(f, 16, dtype=torch.float64)[:, 0]
    reference = _supersampled_coverage(f, 16)
    assert (exact - reference).abs().max() < 0.03
    assert (exact - reference).abs().mean() < 1e-3
    assert set(f.kind[:, 0].tolist()) == {0, 1, 2}


@pytest.mark.parametrize("kind, area", [("disc", math.pi * 0.3 ** 2), ("square", 2 * 0.3 ** 2),
                                        ("triangle", 3 * math.sqrt(3) / 4 * 0.3 ** 2)])
@pytest.mark.parametrize("resolution", [7, 16, (12, 20)])
def test_mean_coverage_is_the_exact_area(kind, area, resolution):
    f = _one(kind, x=0.47, y=0.52, rotation=0.3)
    cover = render_coverage(f, resolution, dtype=torch.float64)
    assert cover.mean().item() == pytest.approx(area, rel=1e-12)


def test_a_fine_render_pooled_equals_the_coarse_render():
    """The box filter is additive: 64 px average-pooled by 4 (and 48 px by 3) equals 16 px up
    to float32 rounding, for RGB scenes with several objects and for sprites."""
    g = torch.Generator().manual_seed(0)
    for spec in PROCEDURAL_DATASETS.values():
        f = spec.sample_factors(16, g)
        for rgba in (False, True):
            # alpha and premultiplied colour are additive (straight colour is not)
            additive = ((lambda x: torch.cat([premultiply(x), x[:, -1:]], 1)) if rgba
                        else (lambda x: x))
            coarse = additive(render(f, 16, rgba=rgba))
            for k in (3, 4):
                fine = additive(render(f, 16 * k, rgba=rgba))
                assert (torch.nn.functional.avg_pool2d(fine, k) - coarse).abs().max() < 2e-6


def test_centroid_of_a_single_shape_is_its_position():
    """The coverage-weighted mean of pixel centres differs from the true centroid only through
    partly covered pixels, each by at most half a pixel: below that bound, and small."""
    g = torch.Generator().manual_seed(1)
    f = sample_factors(30, g)
    resolution = 32
    cover = render_coverage(f, resolution, dtype=torch.float64)[:, 0]
    centres = (torch.arange(resolution, dtype=torch.float64) + 0.5)
    mass = cover.sum(dim=(1, 2))
    cx = (cover * centres[None, None, :]).sum(dim=(1, 2)) / mass
    cy = (cover * centres[None, :, None]).sum(dim=(1, 2)) / mass
    error = torch.stack([cx, cy], -1) - f.position[:, 0].double() * resolution
    partial = ((cover > 0) & (cover < 1)) * cover
    bound = 0.5 * partial.sum(dim=(1, 2)) / mass
    assert (error.abs().amax(-1) <= bound).all()
    assert error.abs().max() < 0.05  # pixels


@pytest.mark.parametrize("kind", SHAPE_KINDS)
def test_rotating_the_factors_rotates_the_image(kind):
    """Position (x, y) -> (y, 1 - x) and rotation + 90 degrees is torch.rot90 of the render
    (counter-clockwise as displayed), exactly up to float rounding."""
    f = _one(kind, x=0.31, y=0.62, scale=0.22, rotation=0.4)
    turned = replace(f, position=torch.stack([f.position[..., 1], 1 - f.position[..., 0]], -1),
                     rotation=f.rotation + math.pi / 2)
    image = render(f, 20, dtype=torch.float64)
    assert torch.allclose(render(turned, 20, dtype=torch.float64),
                          torch.rot90(image, 1, dims=(-2, -1)), atol=1e-12)


def test_symmetries_of_square_and_triangle_and_what_is_not_symmetric():
    square = render(_one("square", rotation=0.2), 24, dtype=torch.float64)
    quarter = render(_one("square", rotation=0.2 + math.pi / 2), 24, dtype=torch.float64)
    assert torch.allclose(square, quarter, atol=1e-12)
    eighth = render(_one("square", rotation=0.2 + math.pi / 4), 24, dtype=torch.float64)
    assert (square - eighth).abs().max() > 0.1
    tri = render(_one("triangle", rotation=0.1), 24, dtype=torch.float64)
    third = render(_one("triangle", rotation=0.1 + 2 * math.pi / 3), 24, dtype=torch.float64)
    assert torch.allclose(tri, third, atol=1e-12)
    assert (tri - render(_one("triangle", rotation=0.1 + math.pi / 3), 24,
                         dtype=torch.float64)).abs().max() > 0.1


def test_interior_and_background_pixels_hold_the_factor_colours_exactly():
    f = sample_factors(20, torch.Generator().manual_seed(2))
    image = render(f, 16)
    cover = render_coverage(f, 16)[:, 0]
    inside, outside = cover == 1, cover == 0
    assert inside.sum(dim=(1, 2)).min() > 0 and outside.sum(dim=(1, 2)).min() > 0
    colour = (2 * f.colour[:, 0] - 1)[:, :, None, None].expand_as(image)
    background = (2 * f.background - 1)[:, :, None, None].expand_as(image)
    mask_in, mask_out = inside[:, None].expand_as(image), outside[:, None].expand_as(image)
    assert torch.equal(image[mask_in], colour[mask_in])
    assert torch.equal(image[mask_out], background[mask_out])
    # partly covered pixels mix the two by the coverage
    mixed = background + (colour - background) * cover[:, None]
    assert (image - mixed).abs().max() < 1e-6


def test_sprite_alpha_is_the_coverage_and_compositing_gives_the_rgb_render():
    spec = PROCEDURAL_DATASETS["sprites16"]
    images, labels, f = spec.sample(12, torch.Generator().manual_seed(4))
    assert images.shape == (12, 4, 16, 16) and spec.shape == (4, 16, 16)
    cover = render_coverage(f, 16)[:, 0]
    assert (((images[:, 3] + 1) / 2) - cover).abs().max() < 1e-6
    # one object: the straight colour is its colour everywhere (transparent pixels included)
    assert torch.allclose(images[:, :3], (2 * f.colour[:, 0] - 1)[:, :, None, None]
                          .expand(-1, -1, 16, 16), atol=1e-6)
    background = (2 * f.background - 1)[:, :, None, None]
    assert (composite(images, background) - render(f, 16)).abs().max() < 1e-6
    grey = premultiply(images)
    assert (grey[cover[:, None].expand_as(grey) == 0] == 0).all()
    assert torch.equal(labels, f.kind[:, 0])


def test_disc_sprite_mean_alpha_is_pi_r_squared():
    f = _one("disc", x=0.5, y=0.5, scale=0.25)
    alpha = (render(f, 40, rgba=True, dtype=torch.float64)[:, 3] + 1) / 2
    assert alpha.mean().item() == pytest.approx(math.pi * 0.25 ** 2, rel=1e-12)


def test_multi_object_scenes_have_the_stated_counts():
    """Connected components of the thresholded coverage (an independent detector) match the
    known count in every scene; objects are placed min_gap apart so they never touch."""
    spec = PROCEDURAL_DATASETS["scenes16"]
    images, labels, f = spec.sample(60, torch.Generator().manual_seed(5))
    assert set(f.count.tolist()) == {1, 2, 3} and torch.equal(labels, f.count - 1)
    cover = render_coverage(f, 32).sum(dim=1)
    components = [ndimage.label(c.numpy() > 0.3)[1] for c in cover]
    assert components == f.count.tolist()
    position, scale, present = f.position.double(), f.scale.double(), f.present
    for i in range(len(f)):
        for a in range(3):
            for b in range(a):
                if present[i, a] and present[i, b]:
                    gap = (position[i, a] - position[i, b]).norm() - scale[i, a] - scale[i, b]
                    assert gap >= spec.min_gap - 1e-6
    # the render of a multi-object scene is each object's own render composited in turn
    alone = [render(replace(f, present=f.present & (torch.arange(3) == k)), 16)
             for k in range(3)]
    base = (2 * f.background - 1)[:, :, None, None]
    summed = base + sum(a - base for a in alone)
    assert (summed - images).abs().max() < 1e-5


def _pair(x_a, x_b, radius, kinds=("disc", "disc")) -> SceneFactors:
    return SceneFactors(
        kind=torch.tensor([[SHAPE_KINDS.index(k) for k in kinds]]),
        position=torch.tensor([[[x_a, 0.5], [x_b, 0.5]]], dtype=torch.float64),
        scale=torch.tensor([[radius, radius]], dtype=torch.float64),
        rotation=torch.zeros(1, 2, dtype=torch.float64),
        colour=torch.tensor([[[1.0, 0.2, 0.2], [0.2, 0.2, 1.0]]], dtype=torch.float64),
        background=torch.tensor([[0.0, 0.5, 0.0]], dtype=torch.float64),
        present=torch.ones(1, 2, dtype=torch.bool))


def test_disjoint_objects_sharing_a_pixel_are_still_exact():
    """Two discs 0.02 apart share the middle column of a 5 px render; coverages add, so the
    render still equals the 40 px render pooled by 8 (the "over" operator would not: it
    treats the two coverages as independent)."""
    f = _pair(0.3, 0.7, 0.19)
    cover = render_coverage(f, 5, dtype=torch.float64)[0]
    assert ((cover[0] > 0) & (cover[1] > 0)).any()
    coarse = render(f, 5, dtype=torch.float64)
    fine = torch.nn.functional.avg_pool2d(render(f, 40, dtype=torch.float64), 8)
    assert (coarse - fine).abs().max() < 1e-12
    for rgba in (False, True):
        assert torch.isfinite(render(f, 5, rgba=rgba)).all()


def test_overlapping_objects_are_composited_in_order():
    """User factors may overlap: the later object is drawn on top (its colour deep inside the
    intersection) and values stay in [-1, 1]; alpha is the coverage of the union."""
    f = _pair(0.4, 0.6, 0.3, kinds=("square", "disc"))
    image = render(f, 20, dtype=torch.float64)[0]
    assert torch.allclose(image[:, 10, 10], 2 * f.colour[0, 1].double() - 1, atol=1e-12)
    assert image.min() >= -1 and image.max() <= 1
    sprite = render(f, 20, rgba=True, dtype=torch.float64)[0]
    cover = render_coverage(f, 20, dtype=torch.float64)[0]
    union = 1 - (1 - cover[0]) * (1 - cover[1])
    assert torch.allclose((sprite[3] + 1) / 2, union)


def test_factor_ranges_and_rotation_periods():
    spec = ProceduralImages(channels=1)
    f = spec.sample_factors(400, torch.Generator().manual_seed(6))
    assert f.colour.shape == (400, 1, 1) and render(f, 8).shape == (400, 1, 8, 8)
    for name, value in (("position_range", f.position), ("scale_range", f.scale),
                        ("colour_range", f.colour), ("background_range", f.background)):
        low, high = getattr(spec, name)
        assert value.min() >= low and value.max() <= high
    assert (f.rotation[f.kind == 0] == 0).all()
    assert f.rotation[f.kind == 1].max() <= math.pi / 2
    assert f.rotation[f.kind == 2].max() <= 2 * math.pi / 3
    assert f.rotation[f.kind == 2].max() > math.pi / 2
    images = spec.render(f)
    assert images.min() >= -1 and images.max() <= 1


def test_load_procedural_keeps_factors_and_is_seeded():
    ds = load_procedural("shapes16", n_train=50, n_test=10, seed=7)
    assert isinstance(ds, ProceduralData) and ds.shape == (3, 16, 16) and ds.num_classes == 3
    assert ds.train.dtype == torch.float32 and len(ds.test_factors) == 10
    assert torch.equal(render(ds.factors, 16), ds.train)
    assert torch.equal(ds.train_labels, ds.factors.kind[:, 0])
    again = load_procedural("shapes16", n_train=50, n_test=10, seed=7)
    assert torch.equal(again.train, ds.train) and torch.equal(again.test, ds.test)
    other = load_procedural("shapes16", n_train=50, n_test=10, seed=8)
    assert not torch.equal(other.train, ds.train)
    big = load_procedural("shapes16", n_train=50, n_test=10, seed=7, resolution=32)
    assert torch.allclose(torch.nn.functional.avg_pool2d(big.train, 2), ds.train, atol=2e-6)
    x, y = ds.sample(8, torch.Generator().manual_seed(0))
    assert x.shape == (8, 3, 16, 16) and y.shape == (8,)
    subset = ds.factors[torch.tensor([3, 1])]
    assert torch.equal(render(subset, 16), ds.train[[3, 1]])


def test_bad_input_is_one_clear_error():
    f = sample_factors(2, torch.Generator().manual_seed(0))
    with pytest.raises(InputError, match="resolution"):
        render(f, 0)
    with pytest.raises(InputError, match="factors.position"):
        render(replace(f, position=f.position * float("nan")), 8)
    with pytest.raises(InputError, match="factors.colour"):
        replace(f, colour=f.colour[:, :, :2])
    with pytest.raises(InputError, match="kinds"):
        ProceduralImages(kinds=("hexagon",))
    with pytest.raises(InputError, match="unknown procedural"):
        load_procedural("shapes99")
    with pytest.raises(InputError, match="could not place"):
        sample_factors(4, torch.Generator().manual_seed(0), n_objects=4, scale_range=(0.2, 0.25),
                       position_range=(0.25, 0.75))


def test_registered_in_load_dataset():
    from monge.data import DATASET_NAMES, load_dataset
    from monge.data.dataset import PROCEDURAL_NAMES

    assert PROCEDURAL_NAMES == tuple(PROCEDURAL_DATASETS)
    assert set(PROCEDURAL_DATASETS) <= set(DATASET_NAMES)
    ds = load_dataset("sprites16", n_train=20, n_test=5, seed=1)
    assert isinstance(ds, ProceduralData) and ds.shape == (4, 16, 16)
    assert load_dataset("shapes16", n_train=20, n_test=5, shape=(768,)).shape == (768,)
