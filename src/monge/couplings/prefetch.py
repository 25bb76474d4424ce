"""Model-independent couplings computed ahead of the optimiser step in a background thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import torch
from torch import Tensor

from monge.core.checks import make_generator
from monge.couplings.base import Coupling, IndependentCoupling, Pairing
from monge.couplings.immiscible import ImmiscibleAssignmentCoupling
from monge.couplings.label_ot import LabelOTCoupling
from monge.couplings.minibatch_ot import MinibatchOTCoupling
from monge.couplings.sinkhorn import SinkhornCoupling
from monge.errors import InputError

BatchSampler = Callable[[int, torch.Generator], tuple[Tensor, Tensor, Tensor | None]]

#: couplings that read neither the model nor the training step and return no loss weights, so
#: their pairs can be computed ahead (the trainer prefetches these by default)
PREFETCH_COUPLINGS: tuple[type[Coupling], ...] = (
    MinibatchOTCoupling, SinkhornCoupling, LabelOTCoupling, ImmiscibleAssignmentCoupling)


def prefetchable(coupling: object) -> bool:
    """Whether ``coupling`` is one of :data:`PREFETCH_COUPLINGS` (model-independent, weightless,
    costly enough to be worth overlapping with the training step)."""
    return isinstance(coupling, PREFETCH_COUPLINGS)


class PrefetchedPairs:
    """Draw minibatches and pair them with a model-independent coupling, ``depth`` steps ahead.

    Method: a producer thread repeats ``x0, x1, y1 = sample_batch(batch_size, gen)`` and
    ``coupling(x0, x1, y1=y1, generator=gen)`` with its own generator ``gen`` (seeded from
    ``seed``) and puts the :class:`Pairing` in a bounded queue; the training loop takes them in
    order. Only this thread touches ``gen``, so the k-th pairing is exactly the k-th pairing of
    the synchronous loop with the same seed (:meth:`synchronous` is that loop), whatever the
    timing. Torch kernels and POT's / SciPy's assignment run while the main thread trains, so the
    coupling's cost (O(B^3) assignment, O(B^2 D) cost matrix) overlaps the model's
    forward/backward. Valid only for couplings that do not read the model (exact OT, Sinkhorn,
    immiscible, label OT); Tong et al. 2024 (OT-CFM) for the coupling itself.

    With every pairing the producer records the generator state *after* it, so :meth:`state`
    is the state after the last batch the consumer took (not the thread's, which runs ahead):
    a checkpoint that stores it resumes the same stream (:meth:`set_state` before the first
    :meth:`next`). ``background=False`` computes each pairing inside :meth:`next` instead (same
    pairs, no thread).

    The :class:`~monge.train.Trainer` uses this automatically for :data:`PREFETCH_COUPLINGS`.
    By hand, use it as the trainer's batch sampler and train with the independent coupling
    (the batches arrive already paired): ``Trainer(model, FlowMatchingLoss(path, coupling=
    IndependentCoupling()), pairs.sample_batch, cfg, prefetch=False)``.

    Args:
        sample_batch: ``(n, generator) -> (x0, x1, y1)`` drawing independent minibatches; it must
            draw only from the generator it is given (not the global torch RNG).
        coupling: a model-independent :class:`~monge.couplings.base.Coupling`.
        batch_size: rows per batch.
        seed: seed or generator of the data stream (owned by the producer thread).
        depth: batches computed ahead (queue size).
        background: run the producer in a thread (default) or inline.

    Example:
        >>> def draw(n, g):
        ...     return torch.randn(n, 2, generator=g), torch.rand(n, 2, generator=g), None
        >>> with PrefetchedPairs(draw, MinibatchOTCoupling(), 64, seed=0) as pairs:
        ...     p = pairs.next()
        >>> tuple(p.x0.shape)
        (64, 2)
    """

    def __init__(self, sample_batch: BatchSampler, coupling: Coupling, batch_size: int,
                 seed: int | torch.Generator | None = 0, depth: int = 2,
                 background: bool = True):
        if not isinstance(coupling, Coupling):
            raise InputError(f"coupling: expected a monge Coupling, got {type(coupling).__name__}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise InputError(f"depth: expected an integer >= 1, got {depth!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        self.sample, self.coupling, self.batch_size = sample_batch, coupling, batch_size
        self.generator = make_generator(seed)
        self.background = bool(background)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = self.generator.get_state()
        self.produced = 0
        self.consumed = 0

    def _one(self) -> tuple[Pairing, Tensor]:
        x0, x1, y1 = self.sample(self.batch_size, self.generator)
        with torch.no_grad():
            p = self.coupling(x0, x1, y1=y1, generator=self.generator)
        return p, self.generator.get_state()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._one()
                self.produced += 1
                if not self._put(item):
                    break
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            self._put(exc)

    def start(self) -> PrefetchedPairs:
        """Start the producer thread (idempotent; a no-op with ``background=False``)."""
        if self._thread is None and self.background:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="monge-prefetch",
                                            daemon=True)
            self._thread.start()
        return self

    def next(self) -> Pairing:
        """The next pairing, in the synchronous order."""
        if not self.background:
            item = self._one()
            self.produced += 1
        else:
            self.start()
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
        pairing, self._state = item
        self.consumed += 1
        return pairing

    def state(self) -> Tensor:
        """Generator state after the last pairing handed out (before the first: the initial
        state); restoring it with :meth:`set_state` continues the stream from there."""
        return self._state.clone()

    def set_state(self, state: Tensor) -> None:
        """Restart the stream from ``state`` (from :meth:`state`); only before the first pairing
        is produced."""
        if self._thread is not None or self.produced:
            raise InputError("set_state: call it before the first pairing is produced")
        self.generator.set_state(state.to(self._state.device))
        self._state = self.generator.get_state()

    def sample_batch(self, n: int, generator: torch.Generator | None = None):
        """Trainer-compatible sampler ``(n, generator) -> (x0, x1, y1)`` of paired batches
        (``generator`` is ignored: the data stream has its own)."""
        if n != self.batch_size:
            raise InputError(f"n: this prefetcher draws batches of {self.batch_size}, got {n}")
        p = self.next()
        return p.x0, p.x1, p.y1

    def close(self) -> None:
        """Stop the producer thread and wait for it (it finishes the pairing it is computing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=600.0)
            self._thread = None

    def __enter__(self) -> PrefetchedPairs:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)     # absent if __init__ raised
        if stop is not None:
            stop.set()

    def synchronous(self, steps: int) -> list[Pairing]:
        """The same stream without a thread (reference; from a fresh generator with the same
        seed only if this object has not produced yet)."""
        if self._thread is not None or self.produced:
            raise InputError("synchronous: call it on a fresh PrefetchedPairs")
        out = []
        for _ in range(steps):
            p, self._state = self._one()
            out.append(p)
        self.produced += steps
        self.consumed += steps
        return out


__all__ = ["PREFETCH_COUPLINGS", "PrefetchedPairs", "IndependentCoupling", "prefetchable"]
