"""One error hierarchy for the whole gateway.

Every error a request can meet carries the HTTP status and the error code it answers with, so
the ingress handler and the admin API each have a single ``except RequestError``::

    GatewayError
     ├── ConfigError                      config refused (startup, reload, check-config)
     ├── OptionError                      a provider option is wrong (becomes a ConfigError)
     ├── StoreError                       the store could not be reached or answered badly
     │    └── UnreadableEvent             one stored event cannot be read (store.records)
     ├── EventNotFound                    no stored event has this id
     ├── InvalidCursor                    a list cursor no list handed out
     ├── CommandError                     a command-line operation failed (exit status 1)
     └── RequestError(status, code)
          ├── UnknownSource          404  unknown_source
          ├── MethodNotAllowed       405  method_not_allowed
          ├── IpNotAllowed           403  ip_not_allowed
          ├── RateLimited            429  rate_limited       (+ Retry-After, RateLimit-*)
          ├── BodyTooLarge           413  body_too_large
          ├── BodyTimeout            408  request_timeout
          ├── VerificationError      401  invalid_signature
          ├── InvalidBody            400  invalid_body
          ├── MissingField           422  missing_field      (+ "missing": every field absent)
          ├── UnroutedRefused        422  unrouted           (on_unrouted: reject)
          ├── InProgress             409  in_progress        (+ Retry-After: 1)
          ├── Unavailable            503  unavailable        (+ Retry-After)
          ├── BadGateway             502  bad_gateway
          ├── GatewayTimeout         504  gateway_timeout
          ├── ClientClosed           499  client_closed      (the sender left mid-request)
          ├── InternalError          500  internal_error     (a bug; logged with its traceback)
          │   the admin API's own:
          ├── InvalidRequest         400  invalid_request    (a parameter or body field)
          ├── Unauthorized           401  unauthorized       (no or a wrong admin token)
          ├── Forbidden              403  forbidden          (a session's POST from another origin)
          ├── NotFound               404  not_found
          ├── AdminDisabled          404  admin_disabled     (no admin.token configured)
          ├── Unrouted               409  unrouted           (replay: no route takes the type)
          │   the buyer's status stream's own (design.md 5.10):
          ├── InvalidToken           401  invalid_token      (none, malformed, expired, another's)
          ├── OriginNotAllowed       403  origin_not_allowed (an Origin not in status.allow_origins)
          └── TooManyStreams         503  too_many_streams   (+ Retry-After; max_streams, per IP)

Messages are for humans and never say which secret, signature or allow-list entry failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config, named by its key (``sources.payments.secrets[0]``)."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


class ConfigError(GatewayError):
    """The config was refused; ``problems`` lists every error found, each with its key."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def at(cls, key: str, message: str) -> ConfigError:
        """A config error with a single problem."""
        return cls([ConfigProblem(key, message)])


class OptionError(GatewayError):
    """A provider option is wrong; ``key`` names it relative to the source's ``options``."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


class StoreError(GatewayError):
    """The store is unreachable or failed; the request answers 503 and nothing is half-done."""


class StoreUnreachable(StoreError):
    """The store could not be reached or did not answer in time (not: it answered with an
    error, or could not confirm a write it made)."""


class EventNotFound(GatewayError):
    """No stored event has this id (for this source, when one was given)."""


class InvalidCursor(GatewayError):
    """A list cursor that no list of this store handed out."""


class CommandError(GatewayError):
    """A command-line operation failed (a refused admin call, a body that cannot be signed)."""


class RequestError(GatewayError):
    """An ingress refusal: the status, the error code and a message safe to show the sender."""

    status: int = 500
    code: str = "internal_error"
    default_message: str = "internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ):
        self.message = message or self.default_message
        self.headers: dict[str, str] = dict(headers or {})
        #: More fields of the JSON answer, beside error, message and request_id.
        self.extra: dict[str, object] = dict(extra or {})
        super().__init__(self.message)


class UnknownSource(RequestError):
    """No source listens on this path."""

    status, code, default_message = 404, "unknown_source", "no webhook source at this path"


class MethodNotAllowed(RequestError):
    """A source path was called with a method other than POST."""

    status, code, default_message = 405, "method_not_allowed", "only POST is accepted here"


class IpNotAllowed(RequestError):
    """The client IP is not in the source's allow-list."""

    status, code, default_message = 403, "ip_not_allowed", "this client address is not allowed"


class RateLimited(RequestError):
    """A rate limit refused the request; headers carry Retry-After and RateLimit-*."""

    status, code, default_message = 429, "rate_limited", "too many requests, slow down"


class BodyTooLarge(RequestError):
    """The body is longer than ``max_body_bytes`` (declared or streamed)."""

    status, code, default_message = 413, "body_too_large", "request body is too large"


class BodyTimeout(RequestError):
    """The body did not arrive within the read timeout."""

    status, code, default_message = 408, "request_timeout", "request body was not received in time"


class VerificationError(RequestError):
    """The provider refused the request's signature, timestamp or token."""

    status, code, default_message = 401, "invalid_signature", "signature verification failed"


class InvalidBody(RequestError):
    """The body could not be parsed where the source needs to read it."""

    status, code, default_message = 400, "invalid_body", "request body is not valid"


class MissingField(RequestError):
    """Fields the source requires are absent from the event; the answer lists them all
    (``missing``), so a sender fixes its body in one go."""

    status, code, default_message = 422, "missing_field", "a required field is missing"

    def __init__(self, fields: Sequence[str]) -> None:
        what = "field" if len(fields) == 1 else "fields"
        super().__init__(
            f"required {what} missing: {', '.join(fields)}", extra={"missing": list(fields)}
        )


class UnroutedRefused(RequestError):
    """No route of the source takes the event's type and the source sets
    ``on_unrouted: reject``: nothing was stored."""

    status, code, default_message = 422, "unrouted", "no route takes this event's type"


class InProgress(RequestError):
    """The same event is being forwarded right now (sync delivery); retry shortly."""

    status, code, default_message = 409, "in_progress", "this event is being processed"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class Unavailable(RequestError):
    """The store is unreachable; the sender should retry, nothing was recorded."""

    status, code, default_message = 503, "unavailable", "temporarily unavailable, retry later"

    def __init__(self, message: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class BadGateway(RequestError):
    """The destination failed or could not be reached (sync delivery)."""

    status, code, default_message = 502, "bad_gateway", "the destination could not be reached"


class GatewayTimeout(RequestError):
    """The destination did not answer within its timeout (sync delivery)."""

    status, code, default_message = 504, "gateway_timeout", "the destination did not answer in time"


class ClientClosed(RequestError):
    """The sender closed the connection before its request was read; nobody gets an answer.

    499 is only a label for logs and metrics (as proxies use it): nothing is sent.
    """

    status, code, default_message = 499, "client_closed", "the client closed the connection"


class InternalError(RequestError):
    """An unexpected failure inside the gateway; nothing was acknowledged, the sender retries."""

    status, code, default_message = 500, "internal_error", "internal error, retry later"


class InvalidRequest(RequestError):
    """An admin request with a parameter or body field that is not valid."""

    status, code, default_message = 400, "invalid_request", "the request is not valid"


class Unauthorized(RequestError):
    """The admin API needs ``Authorization: Bearer <admin.token>``."""

    status, code, default_message = 401, "unauthorized", "a valid admin bearer token is required"


class Forbidden(RequestError):
    """A state-changing admin request carried by the dashboard's session cookie, whose
    ``Origin`` is missing or not the dashboard's own (so no other site can replay or redrive)."""

    status, code, default_message = 403, "forbidden", "this origin may not change anything here"


class NotFound(RequestError):
    """What the admin request names does not exist."""

    status, code, default_message = 404, "not_found", "no such event"


class AdminDisabled(RequestError):
    """No ``admin.token`` is configured, so the admin API is off."""

    status, code, default_message = 404, "admin_disabled", "the admin API is off: set admin.token"


class Unrouted(RequestError):
    """A replay without destinations, of an event whose type no configured route takes."""

    status, code, default_message = (
        409,
        "unrouted",
        "no configured route takes this event's type",
    )


class InvalidToken(RequestError):
    """A status stream's token is missing, malformed, expired or not this payment's;
    ``reason`` says which, for the metrics (the message never says what failed to match)."""

    status, code, default_message = 401, "invalid_token", "a valid status token is required"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class OriginNotAllowed(RequestError):
    """A status stream asked for by a page whose ``Origin`` is not in
    ``status.allow_origins``."""

    status, code, default_message = (
        403,
        "origin_not_allowed",
        "this origin may not follow payments here",
    )


class TooManyStreams(RequestError):
    """This process holds as many status streams as it may (in all, or from this client
    address); ``reason`` names the cap. The page may try again shortly."""

    status, code, default_message = 503, "too_many_streams", "too many status streams are open"

    def __init__(self, message: str, reason: str, *, retry_after: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.reason = reason
