"""Errors users see as one line: what went wrong, where, and what was expected."""

# How the CLI prints an error; the flow finds a failed stage's own message in DVC's output by it.
ERROR_PREFIX = "shortrun: error: "


class ShortrunError(Exception):
    """Base of every error the CLI reports without a traceback."""


class ConfigError(ShortrunError):
    """A params key, value or preset is wrong."""


class DataError(ShortrunError):
    """A corpus file is missing, empty or malformed."""


class TrainingError(ShortrunError):
    """Training cannot go on (non-finite values, a corrupt checkpoint)."""
