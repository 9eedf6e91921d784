"""User-facing errors: every problem a user can fix raises a subclass of UserError.

The CLI catches UserError once, prints its message on one line and exits non-zero.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, config, data or environment, with a fix in its message."""

    exit_code = 2

    def __str__(self) -> str:
        # One line, whatever the user's values hold: line breaks they put in a name are shown escaped.
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


class ConfigError(UserError):
    """An unknown key, a wrong type or an out-of-range value in a config."""


class DataError(UserError):
    """A missing file, unknown column, bad label or empty dataset."""


class ModelLoadError(UserError):
    """A model path or id that cannot be loaded."""


class CheckpointError(UserError):
    """A checkpoint that is missing, unsafe, or made for a different base model."""


class TrainingError(UserError):
    """Training cannot go on (for example the loss became NaN)."""

    exit_code = 3
