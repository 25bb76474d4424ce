"""Exact minibatch optimal-transport coupling (OT-CFM).

Tong et al. (2024), "Improving and generalizing flow-based generative models with minibatch
optimal transport"; Pooladian et al. (2023), "Multisample flow matching". Within each minibatch
of B equal-weight samples the squared-Euclidean OT plan is a permutation (Birkhoff–von Neumann),
found by linear assignment (``scipy.optimize.linear_sum_assignment``, O(B³) worst case). The
permutation is used directly: unlike sampling pairs i.i.d. from the plan, no pair is duplicated or
dropped.
"""

from __future__ import annotations

from monge.couplings.base import Coupling, Pairing
from monge.ot.cost import sq_euclidean_cost
from monge.ot.exact import assignment


class MinibatchOTCoupling(Coupling):
    """Pair x0 and x1 by the exact minibatch OT permutation on the squared Euclidean cost.

    x1 (and its labels) keep their order; x0 is permuted so that ``x0[i]`` is the source sample
    matched to ``x1[i]``.
    """

    name = "ot"

    def pair(self, x0, x1, *, y1, generator) -> Pairing:
        cost = sq_euclidean_cost(x0.detach(), x1.detach())
        perm = assignment(cost)  # row i of x0 -> column perm[i] of x1
        x0_matched = x0.new_empty(x0.shape)
        x0_matched[perm] = x0
        return Pairing(x0_matched, x1, y1)
