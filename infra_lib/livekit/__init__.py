"""LiveKit: connection config, access tokens, room management, webhook checks.

- :class:`LiveKitConfig` (``config.py``): the URL clients dial, the API URL, the key pair.
- :class:`TokenFactory` (``tokens.py``): join tokens for clients, admin tokens for APIs.
- :class:`RoomService` / :class:`AsyncRoomService` (``rooms.py``): rooms and participants.
- :func:`verify_webhook` (``webhooks.py``): check and parse a webhook LiveKit posted.

Names are loaded on first use: ``from infra_lib.livekit import LiveKitConfig``
does not import livekit-api (over half a second), so a service pays for the
SDK only when it mints a token or calls the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra_lib._lazy import lazy_exports

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "LiveKitConfig": "infra_lib.livekit.config",
    "TRACK_SOURCES": "infra_lib.livekit.tokens",
    "JoinToken": "infra_lib.livekit.tokens",
    "TokenFactory": "infra_lib.livekit.tokens",
    "TrackSource": "infra_lib.livekit.tokens",
    "AsyncRoomService": "infra_lib.livekit.rooms",
    "ParticipantInfo": "infra_lib.livekit.rooms",
    "ParticipantState": "infra_lib.livekit.rooms",
    "RoomInfo": "infra_lib.livekit.rooms",
    "RoomService": "infra_lib.livekit.rooms",
    "WebhookEvent": "infra_lib.livekit.webhooks",
    "verify_webhook": "infra_lib.livekit.webhooks",
}

__all__ = [
    "TRACK_SOURCES",
    "AsyncRoomService",
    "JoinToken",
    "LiveKitConfig",
    "ParticipantInfo",
    "ParticipantState",
    "RoomInfo",
    "RoomService",
    "TokenFactory",
    "TrackSource",
    "WebhookEvent",
    "verify_webhook",
]

if TYPE_CHECKING:
    from infra_lib.livekit.config import LiveKitConfig
    from infra_lib.livekit.rooms import (
        AsyncRoomService,
        ParticipantInfo,
        ParticipantState,
        RoomInfo,
        RoomService,
    )
    from infra_lib.livekit.tokens import TRACK_SOURCES, JoinToken, TokenFactory, TrackSource
    from infra_lib.livekit.webhooks import WebhookEvent, verify_webhook


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
