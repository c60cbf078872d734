"""The ``destinations`` section: where events are delivered, signed with what, retried how."""

from typing import TypeVar

from gateway.config.model import (
    DestinationConfig,
)
from gateway.config.reader import (
    NAME,
    Reader,
    choice,
    http_url,
    parse_duration,
    positive_int,
    secret,
)
from gateway.delivery.retry import RetryPolicy
from gateway.secret import Secret
from gateway.signing import MIN_HMAC_KEY_BYTES, hmac_key

T = TypeVar("T")


def _retry(reader: Reader, raw: object) -> RetryPolicy:
    default = RetryPolicy()
    with reader.at("retry"):
        data = reader.mapping(
            raw, {"schedule", "max_attempts", "max_age", "jitter", "initial", "factor", "max_delay"}
        )
        schedule = (
            reader.list_of(data, "schedule", parse_duration)
            if "schedule" in data
            else default.schedule
        )
        max_attempts = reader.field(data, "max_attempts", positive_int, None)
        max_age = reader.field(data, "max_age", parse_duration, default.max_age)
        jitter = reader.field(data, "jitter", float, default.jitter)
        if not 0 <= jitter <= 1:
            reader.problem(reader.key("jitter"), "expected a fraction between 0 and 1")
            jitter = default.jitter
        return RetryPolicy(
            schedule=schedule,
            max_attempts=max_attempts,
            max_age=max_age,
            initial=reader.field(data, "initial", parse_duration, default.initial),
            factor=reader.field(data, "factor", float, default.factor),
            max_delay=reader.field(data, "max_delay", parse_duration, default.max_delay),
            jitter=jitter,
        )


def parse_destination(reader: Reader, name: str, raw: object) -> DestinationConfig | None:
    """One destination, or ``None`` when it has problems (each reported at its key)."""
    before = len(reader.problems)
    if not NAME.match(name):
        reader.problem(reader.key(), "names use letters, digits, _ . -")
    dd = reader.mapping(raw, {"url", "signing_secret", "timeout", "format", "retry"})
    if "url" not in dd:
        reader.problem(reader.key("url"), "required")
    if "signing_secret" not in dd:
        reader.problem(
            reader.key("signing_secret"),
            "required: the destination verifies the gateway's signature with it",
        )
    url = reader.field(dd, "url", http_url, "")
    signing = reader.field(dd, "signing_secret", _signing_secret, None)
    destination = DestinationConfig(
        name=name,
        url=url,
        signing_secret=signing or Secret("-"),
        timeout=reader.field(dd, "timeout", parse_duration, 10.0),
        format=reader.field(dd, "format", choice("binary", "structured"), "binary"),
        retry=_retry(reader, dd.get("retry")),
    )
    return destination if len(reader.problems) == before else None


def _signing_secret(value: object) -> Secret:
    """A destination's ``whsec_`` secret: the gateway signs what it delivers with it."""
    parsed = secret(value)
    key = hmac_key(parsed)  # ValueError when it is not base64 of a key
    if len(key) < MIN_HMAC_KEY_BYTES:
        raise ValueError(f"a whsec_ key must decode to at least {MIN_HMAC_KEY_BYTES} bytes")
    return parsed
