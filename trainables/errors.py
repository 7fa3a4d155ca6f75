"""User-facing errors: printed as one plain message by every CLI, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or options: the message names the file or option and the fix."""


class DataError(UserError):
    """Problems with the image folders (missing, unreadable, mismatched classes)."""


class WeightsError(UserError):
    """Pretrained weights are missing from torchvision's cache and cannot be downloaded."""
