"""States that are a tensor or a tuple of tensors (e.g. (x, log p) for likelihoods, (x, v) for
momentum): the few operations every solver needs, written once.

A field on a tuple state takes and returns the same structure. Solvers combine states only through
:func:`combine`, so each Runge–Kutta method is written once for both kinds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

State = Tensor | tuple[Tensor, ...]


def leaves(x: State) -> tuple[Tensor, ...]:
    """The tensors of a state, in order."""
    return (x,) if isinstance(x, Tensor) else tuple(x)


def first(x: State) -> Tensor:
    """The leading tensor (its batch size and device are the state's)."""
    return x if isinstance(x, Tensor) else x[0]


def combine(x: State, terms: Sequence[tuple[float, State]]) -> State:
    """x + Σ c·k over ``terms`` = [(c, k), ...], leaf by leaf."""
    if isinstance(x, Tensor):
        out = x
        for c, k in terms:
            out = out + c * k
        return out
    return tuple(combine(xi, [(c, k[i]) for c, k in terms]) for i, xi in enumerate(x))


def linear(terms: Sequence[tuple[float, State]]) -> State:
    """Σ c·k over ``terms`` (at least one term)."""
    (c0, k0), *rest = terms
    return combine(scale(c0, k0), rest)


def scale(c: float, x: State) -> State:
    """c·x."""
    return c * x if isinstance(x, Tensor) else tuple(c * xi for xi in x)


def check_state(x: object, name: str = "x") -> State:
    """Return ``x`` if it is a tensor or a non-empty tuple of tensors with one batch size."""
    from monge.errors import InputError

    if isinstance(x, Tensor):
        if x.ndim == 0:
            raise InputError(f"{name}: expected a batched tensor [B, ...], got a scalar")
        return x
    if isinstance(x, tuple | list) and x and all(isinstance(v, Tensor) for v in x):
        sizes = {int(v.shape[0]) if v.ndim else -1 for v in x}
        if len(sizes) != 1 or -1 in sizes:
            raise InputError(f"{name}: every tensor of a tuple state needs the same batch "
                             f"size, got shapes {[tuple(v.shape) for v in x]}")
        return tuple(x)
    raise InputError(f"{name}: expected a tensor or a tuple of tensors, got {type(x).__name__}")


def all_finite(x: State) -> bool:
    """True when every entry of every leaf is finite."""
    return all(bool(torch.isfinite(v).all()) for v in leaves(x))


def stack_states(states: Sequence[State]) -> State:
    """Stack a trajectory of states along a new leading axis (leaf by leaf)."""
    if isinstance(states[0], Tensor):
        return torch.stack(list(states))
    return tuple(torch.stack([s[i] for s in states]) for i in range(len(states[0])))
