"""One decoding policy for the headers the gateway reads or keeps (DESIGN 2, stages 5 and 7).

aiohttp hands header values over as text decoded with ``surrogateescape``: a byte that is not
UTF-8 becomes a lone surrogate that cannot be encoded again (HMAC, SQLite and outbound headers
would all fail on it). And a name may occur twice: a verifier reading one occurrence and an
extractor reading the other would let a signed request through under a second id. So each
header a stage reads must occur at most once and be UTF-8 text, checked here once, before the
stage reads it, with the stage's own refusal (401 for what the signature covers, 400 else).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from multidict import CIMultiDictProxy

from gateway.errors import InvalidBody, RequestError


def is_text(value: str) -> bool:
    """Whether ``value`` is valid Unicode text (no lone surrogate from undecodable bytes)."""
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


def check_single(
    headers: CIMultiDictProxy[str], names: Iterable[str], refusal: type[RequestError]
) -> None:
    """Refuse with ``refusal`` when one of ``names`` occurs twice or is not UTF-8 text."""
    for name in names:
        values = headers.getall(name, ())
        if len(values) > 1:
            raise refusal(f"the {name} header occurs more than once")
        if values and not is_text(values[0]):
            raise refusal(f"the {name} header is not UTF-8 text")


def check_text(headers: CIMultiDictProxy[str], names: Iterable[str]) -> None:
    """Refuse (400) a kept header, any occurrence of it, that is not UTF-8 text or holds a
    control character: it travels on to the destination, where it could not be written."""
    for name in names:
        for value in headers.getall(name, ()):
            if not is_text(value) or has_control(value):
                raise InvalidBody(f"the {name} header is not text that can be forwarded")
