"""Errors raised for bad input.

Every validation error names the offending field and the allowed range, so that a user (or the
CLI, which prints it as one line) can fix the input without reading a traceback.
"""

from __future__ import annotations


class ValidationError(ValueError):
    """A user-supplied value is outside its allowed range.

    Attributes:
        field: dotted name of the offending field, e.g. ``"routing"`` or ``"clients[2].rate"``.
        detail: what was wrong and what is allowed.
    """

    def __init__(self, field: str, detail: str):
        self.field = field
        self.detail = detail
        super().__init__(f"{field}: {detail}")


def require(condition: bool, field: str, detail: str) -> None:
    """Raise :class:`ValidationError` for ``field`` unless ``condition`` holds."""
    if not condition:
        raise ValidationError(field, detail)
