"""Bottom layer: input checks, time broadcasting, atomic writes and stochastic estimators.

Everything here depends only on torch/numpy and :mod:`monge.errors`; every other layer may use it.
"""

from monge.core.checks import as_tensor, check_finite, check_ndim, check_same_batch, make_generator
from monge.core.devices import resolve_device
from monge.core.estimators import (
    hutchinson_trace,
    lanczos,
    spectral_density_slq,
    top_eigenvalue,
)
from monge.core.io import (
    atomic_path,
    atomic_write_bytes,
    ensure_writable_dir,
    remove_stale_temporaries,
)
from monge.core.tensors import as_time, batch_time, broadcast_to_batch

__all__ = [
    "as_tensor", "as_time", "atomic_path", "atomic_write_bytes", "batch_time",
    "broadcast_to_batch", "check_finite", "check_ndim", "check_same_batch", "make_generator",
    "ensure_writable_dir", "hutchinson_trace", "lanczos", "spectral_density_slq",
    "top_eigenvalue", "remove_stale_temporaries", "resolve_device",
]
