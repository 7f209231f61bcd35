"""Verify webhooks that LiveKit posts to a service (room started, participant joined, ...).

LiveKit signs each webhook with the API key pair: the ``Authorization``
header is a JWT issued by the API key and signed with its secret, whose
``sha256`` claim is base64(SHA-256(body)). The body is the JSON form of a
``WebhookEvent`` protobuf. Anything that fails a check is rejected with a
reason, and the endpoint should answer 401 without acting on it.

The JWT checks are :class:`livekit.api.TokenVerifier`'s. The body hash is
compared here rather than through ``WebhookReceiver``, which reports a
mismatch as a bare ``Exception`` that can only be told apart from a bug by
its text; here each failure gets its own reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime

import jwt
from google.protobuf.json_format import Parse, ParseError
from livekit import api

from infra_lib.errors import WebhookRejected
from infra_lib.livekit.config import LiveKitConfig

__all__ = ["WebhookEvent", "verify_webhook"]


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified webhook: what happened, in which room, to whom.

    ``event`` is LiveKit's event name (``"room_started"``,
    ``"participant_joined"``, ``"track_published"``, ...). ``room_name``,
    ``room_sid`` and ``participant_identity`` are ``None`` when the event
    carries no room or participant. ``raw`` is the full protobuf for
    anything else (tracks, egress and ingress details).
    """

    event: str
    id: str
    created_at: datetime
    room_name: str | None
    room_sid: str | None
    participant_identity: str | None
    raw: api.WebhookEvent = field(repr=False, compare=False)


def verify_webhook(
    config: LiveKitConfig, body: bytes | str, authorization_header: str | None
) -> WebhookEvent:
    """Check a webhook request against ``config``'s key pair and parse it.

    ``body`` is the request body exactly as received (bytes preferred: the
    hash is over those bytes); ``authorization_header`` is the value of the
    ``Authorization`` header, with or without a ``Bearer`` prefix. Raises
    :class:`~infra_lib.errors.WebhookRejected` saying which check failed.
    """
    token = (authorization_header or "").strip()
    scheme, _, rest = token.partition(" ")
    if scheme.lower() == "bearer":
        token = rest.strip()
    if not token:
        raise WebhookRejected("webhook has no Authorization header; it is not from LiveKit.")
    raw_body = body.encode() if isinstance(body, str) else bytes(body)

    verifier = api.TokenVerifier(config.api_key, config.api_secret)
    try:
        claims = verifier.verify(token)
    except jwt.InvalidSignatureError as exc:
        raise WebhookRejected(
            "webhook signature does not match LIVEKIT_API_SECRET: it was signed with "
            "another secret, or the token was altered."
        ) from exc
    except jwt.InvalidIssuerError as exc:
        raise WebhookRejected(
            f"webhook was not issued by API key {config.api_key!r}; the server that sent it "
            "uses another LIVEKIT_API_KEY."
        ) from exc
    except jwt.ExpiredSignatureError as exc:
        raise WebhookRejected(
            "webhook token has expired: a replayed request, or this host's clock is wrong."
        ) from exc
    except jwt.ImmatureSignatureError as exc:
        raise WebhookRejected(
            "webhook token is not valid yet: this host's clock is behind the server's."
        ) from exc
    except jwt.MissingRequiredClaimError as exc:
        raise WebhookRejected(f"webhook token lacks a required claim ({exc}).") from exc
    except jwt.DecodeError as exc:
        raise WebhookRejected("webhook Authorization header is not a JWT.") from exc
    except jwt.PyJWTError as exc:
        raise WebhookRejected(f"webhook token is invalid ({type(exc).__name__}).") from exc

    if not claims.sha256:
        raise WebhookRejected("webhook token has no sha256 claim, so the body is unverified.")
    try:
        claimed = base64.b64decode(claims.sha256, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookRejected("webhook token's sha256 claim is not base64.") from exc
    if not hmac.compare_digest(hashlib.sha256(raw_body).digest(), claimed):
        raise WebhookRejected(
            "webhook body does not match the hash its token was signed for: the body was "
            "altered, or was re-encoded (pass the raw request bytes)."
        )

    try:
        message = Parse(raw_body.decode(), api.WebhookEvent(), ignore_unknown_fields=True)
    except (UnicodeDecodeError, ParseError) as exc:
        raise WebhookRejected(
            f"webhook body is signed but is not a LiveKit WebhookEvent ({exc})."
        ) from exc

    room = message.room if message.HasField("room") else None
    participant = message.participant if message.HasField("participant") else None
    return WebhookEvent(
        event=message.event,
        id=message.id,
        created_at=datetime.fromtimestamp(message.created_at, UTC),
        room_name=room.name if room is not None else None,
        room_sid=room.sid if room is not None else None,
        participant_identity=participant.identity if participant is not None else None,
        raw=message,
    )
