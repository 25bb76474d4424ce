"""monge: learning, sampling and measuring transport between probability distributions."""

from monge.errors import ConfigError, DataError, InputError, MongeError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "InputError", "MongeError", "__version__"]
