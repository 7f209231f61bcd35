"""Time-limited TURN credentials for coturn's ``use-auth-secret`` mode.

This is the "TURN REST API" scheme coturn implements: the username is
``<unix expiry>:<user>`` and the password is base64(HMAC-SHA1(secret,
username)). coturn recomputes the HMAC with its shared secret, so no user
database is needed and credentials expire on their own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

__all__ = ["TurnCredentials", "turn_credentials"]

#: A TURN credential lives a day unless asked otherwise; browsers fetch new
#: ones for each call.
DEFAULT_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    """A username/credential pair and when it stops working."""

    username: str
    credential: str
    expires_at: int


def turn_credentials(
    secret: str, user: str, *, ttl_seconds: int = DEFAULT_TTL_SECONDS, now: float | None = None
) -> TurnCredentials:
    """Mint credentials for ``user`` valid for ``ttl_seconds`` from ``now``."""
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    if not user or ":" in user:
        raise ValueError("user must be non-empty and must not contain ':'")
    expires_at = int(time.time() if now is None else now) + ttl_seconds
    username = f"{expires_at}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(username, base64.b64encode(digest).decode("ascii"), expires_at)
