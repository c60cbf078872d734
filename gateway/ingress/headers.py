"""One decoding policy for the headers the gateway reads or keeps (design.md 2, stages 5 and 7).

aiohttp hands header values over as text decoded with ``surrogateescape``: a byte that is not
UTF-8 becomes a lone surrogate that cannot be encoded again (HMAC, SQLite and outbound headers
would all fail on it). And a name may occur twice: a verifier reading one occurrence and an
extractor reading the other would let a signed request through under a second id. So each
header a stage reads must occur at most once and be UTF-8 text, checked here once, before the
stage reads it, with the stage's own refusal (401 for what the signature covers, 400 else).
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDictProxy

from gateway.errors import InvalidBody, RequestError
from gateway.http.text import has_control, is_text


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
