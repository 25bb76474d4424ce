"""Degradation operators: exact adjoints, forward = materialised matrix, Moore–Penrose identities,
agreement with ``torch.linalg.pinv``, batching, dtype, and one clear error per bad input."""

from __future__ import annotations

import pytest
import torch

from monge.errors import InputError
from monge.inverse import (
    AvgPool,
    GaussianBlur,
    Mask,
    Projection,
    box_mask,
    observe,
    random_mask,
    random_projection,
)

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


OPERATORS = {
    "mask-vector": lambda: Mask(torch.tensor([1, 0, 1, 1, 0, 1, 0])),
    "mask-random-image": lambda: random_mask((2, 5, 6), 0.4, _gen(1)),
    "mask-box": lambda: box_mask((3, 6, 7), (1, 2, 3, 4)),
    "mask-broadcast": lambda: Mask(torch.rand(1, 4, 5, generator=_gen(2)) > 0.5,
                                   shape=(2, 4, 5)),
    "avgpool-2": lambda: AvgPool(2, shape=(2, 6, 8)),
    "avgpool-3": lambda: AvgPool(3, shape=(1, 6, 9)),
    "blur-sharp": lambda: GaussianBlur(0.7, 3, shape=(2, 8, 8)),
    "blur-odd": lambda: GaussianBlur(0.6, 5, shape=(1, 7, 9)),
    "blur-wide": lambda: GaussianBlur(2.0, shape=(1, 13, 14)),
    "projection-wide": lambda: random_projection(5, 12, _gen(3)),
    "projection-tall-image": lambda: random_projection(20, 12, _gen(4), shape=(3, 2, 2)),
    "projection-rank-deficient": lambda: Projection(
        torch.randn(6, 2, generator=_gen(5), dtype=F64) @ torch.randn(2, 8, generator=_gen(6),
                                                                        dtype=F64)),
}
# operators whose pseudo-inverse is exact (nothing truncated): A A⁺ A = A holds
EXACT_PINV = {name for name in OPERATORS if name != "blur-wide"}


@pytest.fixture(params=sorted(OPERATORS), ids=str)
def named_op(request):
    return request.param, OPERATORS[request.param]()


def _pinv_matrix(op) -> torch.Tensor:
    """A⁺ materialised by applying ``pinv`` to the output identity basis: [d, m]."""
    m = op.output_dim
    basis = torch.eye(m, dtype=F64).reshape(m, *op.output_shape)
    return op.pinv(basis).reshape(m, op.input_dim).T


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=_gen(seed), dtype=F64)


def test_adjoint_identity(named_op):
    _, op = named_op
    x = _randn(4, *op.input_shape, seed=10)
    y = _randn(4, *op.output_shape, seed=11)
    lhs = (op.forward(x) * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    assert abs(float(lhs - rhs)) < 1e-10


def test_forward_and_adjoint_equal_the_matrix(named_op):
    _, op = named_op
    a = op.matrix()
    assert a.shape == (op.output_dim, op.input_dim)
    x = _randn(3, *op.input_shape, seed=12)
    y = _randn(3, *op.output_shape, seed=13)
    torch.testing.assert_close(op.forward(x).reshape(3, -1), x.reshape(3, -1) @ a.T,
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(op.adjoint(y).reshape(3, -1), y.reshape(3, -1) @ a,
                               rtol=0, atol=1e-12)


def test_moore_penrose_identities(named_op):
    name, op = named_op
    a, p = op.matrix(), _pinv_matrix(op)
    # these two hold for the truncated blur pseudo-inverse as well
    torch.testing.assert_close(p @ a @ p, p, rtol=0, atol=1e-9)
    torch.testing.assert_close(a @ p, (a @ p).T, rtol=0, atol=1e-10)
    torch.testing.assert_close(p @ a, (p @ a).T, rtol=0, atol=1e-10)
    if name in EXACT_PINV:
        torch.testing.assert_close(a @ p @ a, a, rtol=0, atol=1e-10)


def test_pinv_agrees_with_torch_linalg_pinv(named_op):
    name, op = named_op
    a = op.matrix()
    if name.startswith("blur"):  # same relative cutoff convention
        want = torch.linalg.pinv(a, rtol=op.rcond, hermitian=True)
    else:
        want = torch.linalg.pinv(a)
    torch.testing.assert_close(_pinv_matrix(op), want, rtol=0, atol=1e-9)


def test_wide_blur_pinv_is_truncated_and_documented_cutoff_applies():
    op = OPERATORS["blur-wide"]()
    a = op.matrix()
    s = torch.linalg.svdvals(a)
    assert float(s.max()) == pytest.approx(1.0, abs=1e-12)        # k̂(0) = Σ kernel = 1
    assert float(s.min()) < op.rcond                               # something is cut ...
    rank = int((s > op.rcond).sum())
    assert torch.linalg.matrix_rank(_pinv_matrix(op), rtol=1e-8) == rank   # ... exactly that
    # with no cutoff the pseudo-inverse is the exact one (A A⁺ A = A)
    exact = GaussianBlur(2.0, shape=(1, 13, 14), rcond=0.0)
    torch.testing.assert_close(a @ _pinv_matrix(exact) @ a, a, rtol=0, atol=1e-6)


def test_avgpool_pinv_is_a_right_inverse():
    op = AvgPool(2, shape=(3, 4, 6))
    y = _randn(5, *op.output_shape, seed=14)
    torch.testing.assert_close(op.forward(op.pinv(y)), y, rtol=0, atol=1e-14)
    assert torch.equal(op.pinv(y)[:, :, ::2, ::2], y)             # nearest upsampling


def test_blur_is_a_normalised_convolution():
    op = GaussianBlur(1.0, 5, shape=(1, 9, 9))
    x = torch.zeros(1, 1, 9, 9, dtype=F64)
    x[0, 0, 4, 4] = 1.0                                            # an impulse in the middle
    out = op(x)[0, 0]
    torch.testing.assert_close(out[2:7, 2:7], op.kernel, rtol=0, atol=1e-14)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-13)
    assert torch.equal(op(torch.ones(1, 1, 9, 9, dtype=F64)).round(decimals=12),
                       torch.ones(1, 1, 9, 9, dtype=F64))


def test_batching_equals_per_sample_application(named_op):
    _, op = named_op
    x = _randn(5, *op.input_shape, seed=15)
    y = _randn(5, *op.output_shape, seed=16)
    for method, v in ((op.forward, x), (op.adjoint, y), (op.pinv, y)):
        whole = method(v)
        for i in range(v.shape[0]):
            torch.testing.assert_close(whole[i:i + 1], method(v[i:i + 1]), rtol=1e-12,
                                       atol=1e-13)


def test_float32_in_float32_out(named_op):
    _, op = named_op
    x = _randn(2, *op.input_shape, seed=17)
    out = op.forward(x.float())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, op.forward(x).float(), rtol=1e-5, atol=1e-5)


def test_forward_is_differentiable(named_op):
    _, op = named_op
    x = _randn(2, *op.input_shape, seed=18).requires_grad_(True)
    y = _randn(2, *op.output_shape, seed=19)
    (0.5 * ((op.forward(x) - y) ** 2).sum()).backward()
    torch.testing.assert_close(x.grad, op.adjoint(op.forward(x.detach()) - y), rtol=0,
                               atol=1e-12)


# ---------------------------------------------------------------------------------------------
# masks


def test_mask_keeps_full_size_and_zeroes_hidden_entries():
    op = box_mask((2, 5, 5), (1, 1, 2, 3))
    x = _randn(3, 2, 5, 5, seed=20)
    y = op(x)
    assert y.shape == x.shape
    assert torch.equal(y[:, :, 1:3, 1:4], torch.zeros(3, 2, 2, 3, dtype=F64))
    assert op.n_observed == 2 * (25 - 6)
    torch.testing.assert_close(op.adjoint(y), y)
    torch.testing.assert_close(op.pinv(y), y)


def test_random_mask_hides_the_requested_share_of_pixels_reproducibly():
    a = random_mask((3, 10, 10), 0.3, _gen(7))
    b = random_mask((3, 10, 10), 0.3, _gen(7))
    assert torch.equal(a.mask, b.mask)
    assert int((a.mask[0] == 0).sum()) == 30
    assert torch.equal(a.mask[0], a.mask[1]) and torch.equal(a.mask[0], a.mask[2])
    v = random_mask((50,), 0.2, _gen(8))
    assert v.n_observed == 40
    assert random_mask((4, 4), 0.0).n_observed == 16
    assert random_mask((4, 4), 1.0).n_observed == 0


# ---------------------------------------------------------------------------------------------
# observe


def test_observe_adds_noise_of_the_requested_size():
    op = random_projection(40, 30, _gen(9))
    x = _randn(2000, 30, seed=21)
    y = observe(op, x, 0.3, _gen(22))
    resid = y - op(x)
    assert float(resid.std()) == pytest.approx(0.3, rel=0.02)
    assert float(resid.mean()) == pytest.approx(0.0, abs=0.01)
    assert torch.equal(observe(op, x, 0.3, _gen(22)), y)          # reproducible
    assert torch.equal(observe(op, x, 0.0), op(x))


def test_observe_keeps_hidden_mask_entries_zero():
    op = box_mask((1, 6, 6), (0, 0, 3, 3))
    y = observe(op, _randn(4, 1, 6, 6, seed=23), 0.5, _gen(24))
    assert torch.equal(y[:, :, :3, :3], torch.zeros(4, 1, 3, 3, dtype=F64))
    assert float(y[:, :, 3:, 3:].abs().min()) > 0


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("method", ["forward", "adjoint", "pinv"])
def test_wrong_shape_names_expected_and_received(named_op, method):
    _, op = named_op
    shape = op.input_shape if method == "forward" else op.output_shape
    bad = torch.zeros(2, *shape[:-1], shape[-1] + 1, dtype=F64)
    with pytest.raises(InputError) as err:
        getattr(op, method)(bad)
    msg = str(err.value)
    assert "\n" not in msg and f"{method}" in msg
    assert "[B, " + ", ".join(map(str, shape)) + "]" in msg and str(tuple(bad.shape)) in msg
    with pytest.raises(InputError, match="shape"):                  # no batch dimension
        getattr(op, method)(torch.zeros(*shape, dtype=F64))


def test_non_tensor_and_integer_input_are_refused():
    op = AvgPool(2, shape=(1, 4, 4))
    with pytest.raises(InputError, match="must be a tensor"):
        op.forward([[0.0]])
    with pytest.raises(InputError, match="floating-point"):
        op.forward(torch.zeros(1, 1, 4, 4, dtype=torch.int64))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_observation_is_refused(named_op, bad):
    _, op = named_op
    y = torch.zeros(2, *op.output_shape, dtype=F64)
    y.view(-1)[3] = bad
    with pytest.raises(InputError, match="NaN|Inf"):
        op.pinv(y)


def test_observe_refuses_bad_sigma_and_non_finite_x():
    op = Mask(torch.ones(3))
    x = torch.zeros(2, 3, dtype=F64)
    for sigma in (-0.1, float("nan"), float("inf"), "0.1"):
        with pytest.raises(InputError, match="sigma_y"):
            observe(op, x, sigma)
    with pytest.raises(InputError, match="NaN"):
        observe(op, torch.full((2, 3), float("nan"), dtype=F64), 0.1)
    with pytest.raises(InputError, match=r"\[B, 3\]"):
        observe(op, torch.zeros(2, 4, dtype=F64), 0.1)
    with pytest.raises(InputError, match="LinearOperator"):
        observe(torch.eye(3), x, 0.1)


@pytest.mark.parametrize("build, match", [
    (lambda: Mask(torch.tensor([0.0, 0.5, 1.0])), "only 0 and 1"),
    (lambda: Mask(torch.ones(3, 4), shape=(2, 4, 5)), "does not broadcast"),
    (lambda: Mask(torch.tensor(1.0)), "scalar"),
    (lambda: box_mask((1, 5, 5), (3, 3, 3, 1)), "inside the 5x5 image"),
    (lambda: box_mask((1, 5, 5), (0, 0, 0, 2)), "positive size"),
    (lambda: box_mask((5,), (0, 0, 1, 1)), r"end in \(H, W\)"),
    (lambda: box_mask((1, 5, 5), (1, 2)), "top, left, height, width"),
    (lambda: random_mask((4, 4), 1.5), "fraction"),
    (lambda: random_mask((4, 0), 0.5), "positive sizes"),
    (lambda: AvgPool(3, shape=(1, 4, 6)), "not divisible by factor 3"),
    (lambda: AvgPool(0, shape=(1, 4, 4)), "factor"),
    (lambda: AvgPool(2.0, shape=(1, 4, 4)), "factor"),
    (lambda: GaussianBlur(-1.0, 3, shape=(1, 8, 8)), "sigma"),
    (lambda: GaussianBlur(1.0, 4, shape=(1, 8, 8)), "odd"),
    (lambda: GaussianBlur(1.0, 9, shape=(1, 8, 8)), "exceeds the 8x8 image"),
    (lambda: GaussianBlur(1.0, 3, shape=(1, 8, 8), rcond=1.5), "rcond"),
    (lambda: Projection(torch.ones(3)), r"\[rows, d\]"),
    (lambda: Projection(torch.full((2, 3), float("nan"))), "NaN"),
    (lambda: Projection(torch.ones(2, 6), shape=(2, 2)), "d = 6 columns"),
    (lambda: random_projection(0, 4), "rows"),
])
def test_bad_construction_is_one_clear_error(build, match):
    with pytest.raises(InputError, match=match) as err:
        build()
    assert "\n" not in str(err.value)


def test_mask_of_the_wrong_size_for_the_data():
    op = Mask(torch.ones(2, 4, 4))
    with pytest.raises(InputError, match=r"expected|must have shape \[B, 2, 4, 4\]"):
        op.forward(torch.zeros(3, 2, 5, 5, dtype=F64))
