"""Bad input to the OT layer: one clear monge error naming the argument."""

import math

import numpy as np
import pytest
import torch

from monge.errors import InputError
from monge.ot import assignment, solve, sq_euclidean_cost

C = np.random.default_rng(0).random((4, 3))
A = np.full(4, 0.25)
B = np.full(3, 1 / 3)


@pytest.mark.parametrize("method", ["exact", "sinkhorn", "sns", "sparse"])
@pytest.mark.parametrize("a, b, cost, match", [
    (np.array([0.5, -0.1, 0.3, 0.3]), B, C, "a: marginal has 1 negative"),
    (np.array([0.25, np.nan, 0.25, 0.25]), B, C, "a: contains 1 NaN"),
    (A, np.array([0.5, 0.5, 0.5]), C, "a and b: total masses differ"),
    (A, B, np.where(np.eye(4, 3) > 0, np.inf, C), "C: contains 0 NaN and 3 Inf"),
    (A, B, C.T, "a: expected shape"),
    (A, np.full(4, 0.25), C, "b: expected shape"),
    (A, B, C[0], "C: expected a cost matrix"),
])
def test_bad_input_names_the_argument(method, a, b, cost, match):
    with pytest.raises(InputError, match=match):
        solve(a, b, cost, method=method, eps=0.1, **({"k": 2} if method == "sparse" else {}))


def test_bad_eps_method_and_assignment_shape():
    with pytest.raises(InputError, match="eps"):
        solve(A, B, C, method="sinkhorn", eps=-1.0)
    with pytest.raises(InputError, match="eps"):
        solve(A, B, C, method="sns", eps=math.nan)
    with pytest.raises(InputError, match="method"):
        solve(A, B, C, method="auction")
    with pytest.raises(InputError, match="options: k not understood"):
        solve(A, B, C, method="exact", k=3)
    with pytest.raises(InputError, match="square"):
        assignment(torch.zeros(3, 4))
    with pytest.raises(InputError, match="feature sizes"):
        sq_euclidean_cost(torch.zeros(3, 2), torch.zeros(3, 3))


def test_tiny_mass_mismatch_is_tolerated_and_rescaled():
    b = B * (1 + 1e-9)
    r = solve(A, b, C, method="sinkhorn", eps=0.1)
    assert r.converged and abs(float(r.plan.sum()) - 1.0) <= 1e-12
