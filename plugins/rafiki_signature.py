"""Interledger Rafiki webhook signatures (https://rafiki.dev/integration/requirements/webhook-events).

``Rafiki-Signature: t=<unix milliseconds>, v1=<hex>``. The ``v1`` digest is the HMAC-SHA256
of ``<t>.`` followed by the RFC 8785 canonical JSON of ``{id, type, data}``, keyed with the
webhook secret. Rafiki signs the JSON value, not the bytes it sends, so the body is parsed and
re-canonicalized (``gateway.providers.jcs``) and may arrive pretty-printed or unsorted.

Because only ``id``, ``type`` and ``data`` are signed, a body with any other top-level member
is refused: the destination receives the original bytes, and nothing unsigned may ride along
with them. Duplicate member names are refused too (two parsers could read two events from one
body). The timestamp is in milliseconds (seconds are taken too, see ``stamp_seconds``); the
tolerance is in seconds, checked both ways. A Rafiki node counts only 200 as delivered, so
a queued event is answered 200 (``ack_status``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from gateway.errors import VerificationError
from gateway.extract import Extractor, Extractors
from gateway.payments.rules import AmountRule, PaymentRules
from gateway.providers.base import (
    BaseProvider,
    Secret,
    check_timestamp,
    lowered,
    parse_int_timestamp,
)
from gateway.providers.encoding import (
    hmac_digest,
    require_hmac_match,
    timestamped_signatures,
)
from gateway.providers.jcs import CanonicalizationError, canonicalize, loads

HEADER = "rafiki-signature"
#: A ``t`` at or above this is in milliseconds: as seconds it would be after the year 5000,
#: as milliseconds it is after 1973, so the two readings never overlap.
MILLISECOND_STAMPS = 10**11
SCHEME = "v1"
SIGNED_MEMBERS = ("id", "type", "data")


def signed_document(body: bytes) -> bytes:
    """The canonical JSON of the body's ``{id, type, data}``; ``ValueError`` if it has none.

    Raises ``CanonicalizationError`` (a ``ValueError``) when the body is not a JSON object made
    only of those members.
    """
    document = loads(body)
    if not isinstance(document, dict):
        raise CanonicalizationError("body is not a JSON object")
    unsigned = sorted(set(document) - set(SIGNED_MEMBERS))
    if unsigned:
        raise CanonicalizationError(f"body has members Rafiki does not sign: {unsigned}")
    return canonicalize(document)


def stamp_seconds(stamp: int) -> float:
    """Unix seconds of a ``t``: Rafiki's docs give milliseconds, some releases sign seconds
    (``Math.round(Date.now() / 1000)`` in the webhook service); both are signed, so both are
    taken, each checked against the same tolerance."""
    return stamp / 1000 if stamp >= MILLISECOND_STAMPS else float(stamp)


def signed_payload(timestamp: str, body: bytes) -> bytes:
    """The bytes a Rafiki ``v1`` signature covers."""
    return timestamp.encode() + b"." + signed_document(body)


class Rafiki(BaseProvider):
    """Rafiki ``Rafiki-Signature`` (v1 HMAC-SHA256 over ``t.`` + JCS of the event)."""

    name = "rafiki"
    reads = frozenset({HEADER})
    uses_timestamp = True
    # Rafiki's webhook service posts with ``validateStatus: (status) => status === 200``
    # (packages/backend/src/webhook/service.ts): a 202 counts as a failure and is sent again.
    ack_status = 200
    defaults = Extractors(
        id=Extractor("body", "/id"),
        type=Extractor("body", "/type"),
        dedupe=Extractor("body", "/id"),
    )
    # Rafiki's incoming and outgoing payment events carry the payment as ``data`` (its id,
    # its Open Payments amounts); other events (liquidity, wallet addresses) are not about one.
    payments = PaymentRules(
        key=Extractor("body", "/data/id"),
        amount=AmountRule(
            objects=(
                Extractor("body", "/data/receivedAmount"),
                Extractor("body", "/data/debitAmount"),
            )
        ),
        states=MappingProxyType(
            {
                "incoming_payment.created": "pending",
                "incoming_payment.partial_payment_received": "processing",
                "incoming_payment.completed": "completed",
                "incoming_payment.expired": "expired",
                "outgoing_payment.created": "pending",
                "outgoing_payment.completed": "completed",
                "outgoing_payment.failed": "failed",
            }
        ),
        types=("incoming_payment.*", "outgoing_payment.*"),
    )

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[Secret], now: float
    ) -> None:
        """Check ``t`` (milliseconds) and every ``v1`` against each secret."""
        stamp, candidates = timestamped_signatures(
            lowered(headers).get(HEADER), "Rafiki-Signature", SCHEME
        )
        check_timestamp(stamp_seconds(parse_int_timestamp(stamp)), now, self.tolerance)
        try:
            payload = signed_payload(stamp, body)
        except CanonicalizationError as exc:
            raise VerificationError(f"body cannot be canonicalized: {exc}") from exc
        require_hmac_match(payload, secrets, candidates)

    def sample_body(self, payment: Mapping[str, object], event_id: str) -> bytes:
        """An ``incoming_payment.completed`` (or, for a failed payment, an
        ``outgoing_payment.failed``) event whose ``data`` carries the payment in its metadata."""
        completed = payment.get("status") != "failed"
        data: dict[str, object] = {
            "id": f"https://rafiki.example/incoming-payments/{uuid.uuid4()}",
            "walletAddressId": "https://rafiki.example/accounts/marketplace",
            "completed": completed,
            "receivedAmount": {"value": "2500" if completed else "0", "assetCode": "USD",
                               "assetScale": 2},
            "metadata": {k: v for k, v in payment.items() if k in ("offerId", "pendingId")},
            "createdAt": payment.get("timestamp"),
        }  # fmt: skip
        kind = "incoming_payment.completed" if completed else "outgoing_payment.failed"
        event = {"id": event_id, "type": kind, "data": data}
        return json.dumps(event, separators=(",", ":")).encode()

    def sign(self, body: bytes, secret: Secret, now: float, **kw: Any) -> dict[str, str]:
        """The ``Rafiki-Signature`` header; ``body`` must be a JSON ``{id, type, data}``."""
        timestamp = str(int(now * 1000))
        digest = hmac_digest(secret.encode(), signed_payload(timestamp, body)).hex()
        return {"Rafiki-Signature": f"t={timestamp}, {SCHEME}={digest}"}


PROVIDERS = (Rafiki,)
