"""Errors users see as one line: what went wrong, where, and what was expected."""


class ShortrunError(Exception):
    """Base of every error the CLI reports without a traceback."""


class ConfigError(ShortrunError):
    """A params key, value or preset is wrong."""


class DataError(ShortrunError):
    """A corpus file is missing, empty or malformed."""


class TrainingError(ShortrunError):
    """Training cannot go on (non-finite values, a corrupt checkpoint)."""
