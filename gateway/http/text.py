"""What counts as text in a header or a parameter: valid Unicode, and no control characters
where a value travels on as a header."""

from __future__ import annotations

import re


def is_text(value: str) -> bool:
    """Whether ``value`` is valid Unicode text (no lone surrogate from undecodable bytes)."""
    if value.isascii():  # most values: answered without encoding a copy
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: C0 controls other than tab, DEL, and the C1 controls.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def has_control(value: str) -> bool:
    """Whether ``value`` holds a control character (C0 other than tab, DEL, or C1)."""
    return _CONTROL.search(value) is not None
