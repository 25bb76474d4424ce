"""Errors monge raises for bad input and failed solves.

Every user-facing problem (bad data, bad config, bad marginals, missing files) raises a subclass
of :class:`MongeError` whose message names the offending input in one line. The CLI catches
``MongeError`` and prints that line without a traceback.
"""

from __future__ import annotations


class MongeError(Exception):
    """Base class of every error monge raises on purpose."""


class InputError(MongeError, ValueError):
    """An argument, array or file has the wrong shape, values or type."""


class DataError(InputError):
    """A data file or data set is missing, unreadable or holds invalid values."""


class ConfigError(InputError):
    """A configuration file or option is invalid (unknown key, bad value)."""


class ConvergenceWarning(UserWarning):
    """A solver stopped before meeting its tolerance; the result is flagged ``converged=False``."""


__all__ = ["MongeError", "InputError", "DataError", "ConfigError", "ConvergenceWarning"]
