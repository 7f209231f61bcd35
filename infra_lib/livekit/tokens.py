"""Access tokens for LiveKit: join tokens for clients, admin tokens for server APIs.

A backend (the video-service) mints a join token per participant and hands it
to the browser with the URL to dial; the browser never sees the API secret.
Tokens are JWTs signed with HS256 by :class:`livekit.api.AccessToken`, so they
are exactly what LiveKit's own SDKs produce.

Minting sits on a request path, so the factory checks its own settings once,
in ``__init__``, and per call only checks the arguments it is given.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from time import time
from typing import Final, Literal

from livekit.api import AccessToken, VideoGrants

from infra_lib.errors import ConfigError
from infra_lib.livekit.config import LiveKitConfig, check_name

__all__ = ["TRACK_SOURCES", "JoinToken", "TokenFactory", "TrackSource"]

TrackSource = Literal["camera", "microphone", "screen_share", "screen_share_audio"]

#: The names LiveKit accepts in a token's ``canPublishSources``.
TRACK_SOURCES: Final = frozenset({"camera", "microphone", "screen_share", "screen_share_audio"})

_ONE_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class JoinToken:
    """What a client needs to join a room: the token and the URL to dial.

    ``token`` is a bearer credential, so it is left out of ``repr``.
    ``expires_at`` is the token's ``exp`` claim, timezone-aware UTC; a client
    already in the room stays in after it, but cannot rejoin with it.
    """

    token: str = field(repr=False)
    url: str
    identity: str
    room: str
    expires_at: datetime


class TokenFactory:
    """Mints join and admin tokens signed with one LiveKit API key pair.

    ``default_ttl`` is used when a call gives no ``ttl``; no call may ask for
    more than ``max_ttl``. Lifetimes are whole seconds (JWT times are), and
    shorter than one second is refused.
    """

    __slots__ = (
        "_api_key",
        "_api_secret",
        "_config",
        "_default_seconds",
        "_default_ttl",
        "_last_expiry",
        "_max_ttl",
        "_url",
    )

    def __init__(
        self,
        config: LiveKitConfig,
        *,
        default_ttl: timedelta = timedelta(hours=1),
        max_ttl: timedelta = timedelta(hours=24),
    ) -> None:
        self._config = config
        # Copied out of the config so the per-token path reads plain attributes.
        self._api_key = config.api_key
        self._api_secret = config.api_secret
        self._url = config.url
        self._max_ttl = _whole_seconds("max_ttl", max_ttl)
        self._default_ttl = self._check_ttl(default_ttl, what="default_ttl")
        self._default_seconds = int(self._default_ttl.total_seconds())
        # (exp, expires_at) of the last token: at thousands of tokens a second
        # most share their second, and one tuple is replaced atomically.
        self._last_expiry: tuple[int, datetime] = (0, datetime.fromtimestamp(0, UTC))

    @property
    def config(self) -> LiveKitConfig:
        """The config whose key pair signs the tokens."""
        return self._config

    def join_token(
        self,
        room: str,
        identity: str,
        *,
        name: str | None = None,
        metadata: str | None = None,
        attributes: Mapping[str, str] | None = None,
        ttl: timedelta | None = None,
        can_publish: bool = True,
        can_subscribe: bool = True,
        can_publish_data: bool = True,
        can_publish_sources: Iterable[TrackSource] | None = None,
        hidden: bool = False,
        room_admin: bool = False,
    ) -> JoinToken:
        """A token that lets ``identity`` join ``room`` (created on join if missing).

        ``name`` is the display name, ``metadata`` and ``attributes`` are
        visible to the other participants. ``can_publish_sources`` limits
        publishing to those track sources (see :data:`TRACK_SOURCES`).
        ``hidden`` keeps the participant out of others' participant lists (a
        recorder, a bot); ``room_admin`` also lets the token's holder manage
        this room through the server API.
        """
        check_name("room", room)
        check_name("identity", identity)
        if ttl is None:
            lifetime, seconds = self._default_ttl, self._default_seconds
        else:
            lifetime = self._check_ttl(ttl)
            seconds = int(lifetime.total_seconds())
        grants = VideoGrants(
            room_join=True,
            room=room,
            can_publish=can_publish,
            can_subscribe=can_subscribe,
            can_publish_data=can_publish_data,
            can_publish_sources=None
            if can_publish_sources is None
            else _sources(can_publish_sources),
            # None keeps the claim out of the token rather than writing false.
            hidden=True if hidden else None,
            room_admin=True if room_admin else None,
        )
        token = (
            AccessToken(self._api_key, self._api_secret)
            .with_identity(identity)
            .with_ttl(lifetime)
            .with_grants(grants)
        )
        if name is not None:
            token.with_name(_text("name", name))
        if metadata is not None:
            token.with_metadata(_text("metadata", metadata))
        if attributes:
            token.with_attributes(_attributes(attributes))
        # AccessToken reads the clock itself and writes exp = floor(now) + ttl.
        # When the second did not tick during to_jwt(), that is before + ttl;
        # otherwise the token is decoded for the exact claim.
        before = int(time())
        jwt = token.to_jwt()
        exp = before + seconds if int(time()) == before else _exp_claim(jwt)
        last = self._last_expiry
        if last[0] == exp:
            expires_at = last[1]
        else:
            expires_at = datetime.fromtimestamp(exp, UTC)
            self._last_expiry = (exp, expires_at)
        return JoinToken(jwt, self._url, identity, room, expires_at)

    def admin_token(
        self,
        *,
        room_create: bool = False,
        room_list: bool = False,
        room_admin_room: str | None = None,
        ttl: timedelta | None = None,
    ) -> str:
        """A token for LiveKit's server API, with only the grants asked for.

        ``room_admin_room`` grants administration (list and remove
        participants, delete, update metadata) of that one room. At least one
        grant is required: a token that allows nothing is a mistake.
        """
        if room_admin_room is not None:
            check_name("room", room_admin_room)
        if not (room_create or room_list or room_admin_room is not None):
            raise ConfigError(
                "admin_token() needs at least one grant: room_create, room_list or room_admin_room."
            )
        lifetime = self._default_ttl if ttl is None else self._check_ttl(ttl)
        grants = VideoGrants(
            room_create=True if room_create else None,
            room_list=True if room_list else None,
            room_admin=True if room_admin_room is not None else None,
            room=room_admin_room or "",
            # An API token never joins, so it should not carry join permissions.
            can_publish=False,
            can_subscribe=False,
            can_publish_data=False,
        )
        return (
            AccessToken(self._api_key, self._api_secret)
            .with_ttl(lifetime)
            .with_grants(grants)
            .to_jwt()
        )

    def _check_ttl(self, ttl: timedelta, *, what: str = "ttl") -> timedelta:
        lifetime = _whole_seconds(what, ttl)
        if lifetime > self._max_ttl:
            raise ConfigError(
                f"token {what} {ttl} is longer than the factory's max_ttl {self._max_ttl}; "
                "mint a new token when the old one runs out instead."
            )
        return lifetime


def _whole_seconds(what: str, ttl: timedelta) -> timedelta:
    if not isinstance(ttl, timedelta):
        raise ConfigError(f"token {what} must be a datetime.timedelta, not {ttl!r}.")
    if ttl < _ONE_SECOND:
        raise ConfigError(f"token {what} must be at least one second, not {ttl}.")
    # JWT times are whole seconds; rounding here makes exp - nbf equal the ttl.
    return timedelta(seconds=int(ttl.total_seconds()))


def _sources(sources: Iterable[str]) -> list[str]:
    if isinstance(sources, str):
        raise ConfigError(
            f"can_publish_sources must be a list of source names, not the string {sources!r}."
        )
    chosen = list(dict.fromkeys(sources))
    unknown = [source for source in chosen if source not in TRACK_SOURCES]
    if unknown:
        raise ConfigError(
            f"unknown track source(s) {', '.join(map(repr, unknown))}; LiveKit knows "
            f"{', '.join(sorted(TRACK_SOURCES))}."
        )
    return chosen


def _text(what: str, value: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"token {what} must be a string, not {type(value).__name__}.")
    return value


def _attributes(attributes: Mapping[str, str]) -> dict[str, str]:
    result = dict(attributes)
    for key, value in result.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(
                f"token attributes map strings to strings; {key!r}: {value!r} is not."
            )
    return result


def _exp_claim(jwt: str) -> int:
    payload = jwt.split(".", 2)[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return int(claims["exp"])
