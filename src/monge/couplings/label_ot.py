"""Label-aware minibatch OT for class-conditional models.

Plain minibatch OT (Tong et al. 2024; Pooladian et al. 2023) pairs noise with targets regardless of
their class, so the noise a class-y model sees during training is the part of N(0, I) that global
OT sends to class y, not N(0, I) itself. At sampling time the model conditioned on y starts from
the full N(0, I): the coupling has biased every class-conditional source marginal. Keeping the OT
inside each class removes that bias (the conditional OT-CFM setting of Tong et al. 2024, Sec. 5).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from monge.couplings._costs import (
    check_cost_kind,
    check_rows_finite,
    cost_matrix,
    permute_to_targets,
)
from monge.couplings.base import Coupling, Pairing
from monge.errors import ConfigError, InputError
from monge.ot.exact import assignment

LabelMode = Literal["within", "penalty"]


def source_groups(y1: Tensor, generator: torch.Generator | None) -> Tensor:
    """Pseudo-labels for an unlabelled source batch: a uniformly random arrangement of ``y1``.

    The source (noise) carries no labels. Giving source row ``i`` the label ``z_i = y1[π(i)]``
    for a uniformly random permutation π splits the batch into per-class groups whose sizes equal
    the class counts of the targets; each group is an i.i.d. sample of the source distribution
    because the split does not look at the source values.
    """
    perm = torch.randperm(y1.shape[0], generator=generator, device=y1.device)
    return y1[perm]


class LabelOTCoupling(Coupling):
    """Exact minibatch OT that respects the targets' class labels.

    Method: the unlabelled source batch is split at random into per-class groups with the sizes
    of the target classes (:func:`source_groups`); then

    - ``mode="within"``: each group is matched to its class's targets by an exact linear
      assignment on the cost (block-wise OT, Σ_c O(n_c³)). A pair never crosses classes and each
      class's sources remain an i.i.d. source sample, so the class-conditional source marginal is
      unbiased;
    - ``mode="penalty"``: one assignment on the whole batch with the cost
      ``C_ij + λ·[z_i ≠ y1_j]``; λ = 0 is plain minibatch OT and λ → ∞ is ``"within"``. A
      finite λ lets a cross-class pair through when it saves more than λ of transport cost
      (trading straightness against the per-class marginal bias above). λ is
      ``penalty × median(C)`` with ``relative=True`` (default), else ``penalty`` in cost units.

    Targets and labels keep their order; the source rows are permuted (a permutation, as in
    :class:`~monge.couplings.MinibatchOTCoupling`). Labels are required.

    Args:
        mode: ``"within"`` or ``"penalty"``.
        penalty: cross-class penalty for ``mode="penalty"``.
        relative: the penalty is a multiple of the median cost entry.
        cost: ``"sqeuclidean"`` (default) or ``"euclidean"``.

    Example:
        >>> y = torch.tensor([0, 1, 0, 1])
        >>> p = LabelOTCoupling()(torch.randn(4, 2), torch.randn(4, 2), y1=y)
        >>> torch.equal(p.y1, y)
        True
    """

    name = "label-ot"

    def __init__(self, mode: LabelMode = "within", penalty: float = 1.0, *,
                 relative: bool = True, cost: str = "sqeuclidean"):
        if mode not in ("within", "penalty"):
            raise ConfigError(f"mode: expected 'within' or 'penalty', got {mode!r}")
        if isinstance(penalty, bool) or not isinstance(penalty, int | float) or not penalty >= 0:
            raise ConfigError(f"penalty: expected a non-negative number, got {penalty!r}")
        self.mode, self.penalty, self.relative = mode, float(penalty), bool(relative)
        self.cost = check_cost_kind(cost)
        self.last_source_labels: Tensor | None = None

    def __repr__(self) -> str:
        return f"LabelOTCoupling(mode={self.mode!r}, penalty={self.penalty})"

    def pair(self, x0, x1, *, y1, generator) -> Pairing:
        if y1 is None:
            raise InputError("y1: label-ot coupling needs class labels for the targets; "
                             "use coupling 'ot' for unlabelled data")
        if y1.ndim != 1 or y1.shape[0] != x1.shape[0]:
            raise InputError(f"y1: expected integer labels of shape [{x1.shape[0]}], "
                             f"got {tuple(y1.shape)}")
        if torch.is_floating_point(y1) or torch.is_complex(y1):
            raise InputError(f"y1: expected integer class labels, got dtype {y1.dtype}")
        check_rows_finite(x0, x1)
        z = source_groups(y1, generator)
        self.last_source_labels = z
        C = cost_matrix(x0, x1, self.cost)
        if self.mode == "penalty":
            lam = self.penalty * (float(C.median()) if self.relative else 1.0)
            C = C + lam * (z.unsqueeze(1) != y1.unsqueeze(0)).to(C.dtype)
            return Pairing(permute_to_targets(x0, assignment(C)), x1, y1)
        perm = torch.empty(x0.shape[0], dtype=torch.long, device=x0.device)
        for c in torch.unique(y1):
            rows = (z == c).nonzero().squeeze(1)
            cols = (y1 == c).nonzero().squeeze(1)
            sub = assignment(C[rows][:, cols])
            perm[rows] = cols[sub]
        return Pairing(permute_to_targets(x0, perm), x1, y1)
