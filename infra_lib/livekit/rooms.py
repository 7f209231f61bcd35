"""Rooms and participants through LiveKit's server API, async or from sync code.

:class:`AsyncRoomService` wraps :class:`livekit.api.LiveKitAPI` for asyncio
code. :class:`RoomService` offers the same calls to synchronous code (Django
views, Celery tasks): it runs an :class:`AsyncRoomService` on a private event
loop in a thread of its own, so it works from any thread, including one that
is itself running an event loop, where ``asyncio.run`` would fail.

Both return small frozen dataclasses, not protobufs, and raise infra_lib's
errors: :class:`~infra_lib.errors.ServiceUnavailable` when the server cannot
be reached or refuses the key pair, :class:`~infra_lib.errors.LiveKitError`
when it refuses the call itself.

Deleting a room that does not exist, and removing a participant who is not
in the room, succeed without doing anything: the state the caller asked for
already holds, and "end the call" or "kick" should not fail because the last
participant left a moment earlier.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, cast

import aiohttp
from livekit import api

from infra_lib._closing import Closing
from infra_lib.errors import ConfigError, LiveKitError, ServiceUnavailable
from infra_lib.livekit.config import LiveKitConfig, check_name

__all__ = ["AsyncRoomService", "ParticipantInfo", "ParticipantState", "RoomInfo", "RoomService"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

ParticipantState = Literal["joining", "joined", "active", "disconnected"]

# The server echoes a rejected token in some messages; a token is a credential.
_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")

_NOT_FOUND = "not_found"

# What a forked child inherited from its parent's RoomService. Finalising it
# would close the parent's pooled connections through the epoll instance both
# processes share (and send TLS close alerts on its sockets), so the child
# keeps it, unused, until the process ends.
_INHERITED: list[object] = []


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """A room as the server reports it.

    ``max_participants`` is ``None`` when the room has no limit;
    ``empty_timeout`` is how long the server keeps the room open with nobody
    in it.
    """

    name: str
    sid: str
    num_participants: int
    max_participants: int | None
    empty_timeout: timedelta
    metadata: str
    creation_time: datetime


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    """A participant of a room as the server reports it."""

    identity: str
    name: str
    state: ParticipantState
    joined_at: datetime


class AsyncRoomService:
    """Room and participant management on one LiveKit server, for asyncio code.

    Use it as ``async with AsyncRoomService(config) as rooms:``, or call
    :meth:`aclose` when done. The HTTP session is opened on first use, on the
    event loop that makes the call; keep using the instance from that loop.
    """

    def __init__(self, config: LiveKitConfig) -> None:
        self._config = config
        self._api: api.LiveKitAPI | None = None

    @property
    def config(self) -> LiveKitConfig:
        return self._config

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session; a later call opens a new one."""
        client, self._api = self._api, None
        if client is not None:
            await client.aclose()

    def _client(self) -> api.LiveKitAPI:
        if self._api is None:
            self._api = api.LiveKitAPI(
                self._config.api_url,
                self._config.api_key,
                self._config.api_secret,
                timeout=aiohttp.ClientTimeout(total=self._config.timeout),
            )
        return self._api

    async def create_room(
        self,
        name: str,
        *,
        empty_timeout: timedelta | None = None,
        max_participants: int | None = None,
        metadata: str | None = None,
    ) -> RoomInfo:
        """Create room ``name``, or return it unchanged if it already exists.

        Unset options take the server's defaults (an empty room closes after
        five minutes; no participant limit). The server keeps an existing
        room's settings: call :meth:`delete_room` first to change them.
        """
        check_name("room", name)
        request = api.CreateRoomRequest(name=name)
        if empty_timeout is not None:
            request.empty_timeout = _seconds("empty_timeout", empty_timeout)
        if max_participants is not None:
            if isinstance(max_participants, bool) or not isinstance(max_participants, int):
                raise ConfigError(f"max_participants must be an int, not {max_participants!r}.")
            if max_participants < 1:
                raise ConfigError(
                    f"max_participants must be at least 1, not {max_participants}; "
                    "leave it unset for no limit."
                )
            request.max_participants = max_participants
        if metadata is not None:
            request.metadata = metadata
        async with self._calling(f"create room {name!r}"):
            room = await self._client().room.create_room(request)
        return _room_info(room)

    async def list_rooms(self, names: Iterable[str] | None = None) -> list[RoomInfo]:
        """The open rooms, or those of ``names`` that are open."""
        request = api.ListRoomsRequest()
        if names is not None:
            if isinstance(names, str):
                raise ConfigError(f"names must be a list of room names, not the string {names!r}.")
            request.names.extend(check_name("room", name) for name in names)
            if not request.names:
                return []
        async with self._calling("list rooms"):
            response = await self._client().room.list_rooms(request)
        return [_room_info(room) for room in response.rooms]

    async def delete_room(self, name: str) -> None:
        """Close room ``name``, disconnecting everyone in it; a missing room is not an error."""
        check_name("room", name)
        try:
            async with self._calling(f"delete room {name!r}"):
                await self._client().room.delete_room(api.DeleteRoomRequest(room=name))
        except LiveKitError as exc:
            if exc.code != _NOT_FOUND:
                raise
            log.debug("LiveKit room %r did not exist; nothing to delete", name)

    async def list_participants(self, room: str) -> list[ParticipantInfo]:
        """The participants of ``room``; empty when the room does not exist."""
        check_name("room", room)
        async with self._calling(f"list the participants of room {room!r}"):
            response = await self._client().room.list_participants(
                api.ListParticipantsRequest(room=room)
            )
        return [_participant_info(p) for p in response.participants]

    async def remove_participant(self, room: str, identity: str) -> None:
        """Disconnect ``identity`` from ``room``; one who is not there is not an error.

        The participant's client may reconnect if its token is still valid;
        to keep someone out, stop minting tokens for them and let the
        current one expire.
        """
        check_name("room", room)
        check_name("identity", identity)
        try:
            async with self._calling(f"remove participant {identity!r} from room {room!r}"):
                await self._client().room.remove_participant(
                    api.RoomParticipantIdentity(room=room, identity=identity)
                )
        except LiveKitError as exc:
            if exc.code != _NOT_FOUND:
                raise
            log.debug("participant %r was not in LiveKit room %r", identity, room)

    @asynccontextmanager
    async def _calling(self, action: str) -> AsyncIterator[None]:
        """Bound the block by the config's timeout; raise infra_lib's errors from it."""
        where = self._config.api_url
        try:
            # livekit-api passes timeout=None on each request, which aiohttp
            # reads as "no timeout", overriding the session's: without this a
            # server that accepts but never answers blocks the caller forever.
            async with asyncio.timeout(self._config.timeout):
                yield
        except api.TwirpError as exc:
            detail = _scrub(exc.message, self._config.api_secret)
            if exc.status == 401 or exc.code == api.TwirpErrorCode.UNAUTHENTICATED:
                raise ServiceUnavailable(
                    f"LiveKit at {where} rejected API key {self._config.api_key!r} while "
                    f"trying to {action}. Check that LIVEKIT_API_KEY and LIVEKIT_API_SECRET "
                    "are the key pair the server was started with (`inv up` recreates the "
                    "container after a change to .env).",
                    service="livekit",
                ) from exc
            if exc.status >= 500 or exc.code == api.TwirpErrorCode.UNAVAILABLE:
                raise ServiceUnavailable(
                    f"LiveKit at {where} failed to {action}: {exc.code} ({exc.status}) "
                    f"{detail}. Check the server's logs (`inv logs --service livekit`).",
                    service="livekit",
                ) from exc
            raise LiveKitError(
                f"LiveKit at {where} refused to {action}: {exc.code} ({exc.status}) {detail}",
                code=exc.code,
                status=exc.status,
            ) from exc
        except TimeoutError as exc:
            # aiohttp's own timeout errors are TimeoutErrors too, so this comes first.
            raise ServiceUnavailable(
                f"LiveKit at {where} did not answer within {self._config.timeout:g} s while "
                f"trying to {action}. Is the server overloaded, or is something else listening "
                "on that port? Check with `inv status`.",
                service="livekit",
            ) from exc
        except aiohttp.ClientError as exc:
            reason = _scrub(str(exc), self._config.api_secret) or type(exc).__name__
            raise ServiceUnavailable(
                f"cannot reach LiveKit at {where} to {action} ({reason}). Is the stack up? "
                "Check with `inv status` and start it with `inv up`; check "
                "LIVEKIT_HTTP_PORT and INFRA_PUBLIC_HOST in .env.",
                service="livekit",
            ) from exc


class RoomService(Closing):
    """:class:`AsyncRoomService` for synchronous code.

    The calls run on a private event loop in a daemon thread that the first
    call starts and :meth:`close` (or leaving a ``with`` block) stops; a call
    after ``close`` starts a new one. Any number of threads may call at once;
    call ``close`` when none is in flight.

    A child process forked after the thread started (Celery's prefork pool,
    multiprocessing) starts a loop of its own on its first call and leaves
    the parent's connections alone. A child that exits through normal
    interpreter shutdown instead of ``os._exit`` may still close them, so in
    that case call ``close`` before forking.
    """

    def __init__(self, config: LiveKitConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._service: AsyncRoomService | None = None
        _LIVE.add(self)

    @property
    def config(self) -> LiveKitConfig:
        return self._config

    def close(self) -> None:
        """Close the HTTP session and stop the loop's thread."""
        with self._lock:
            loop, thread, service = self._loop, self._thread, self._service
            self._loop = self._thread = self._service = None
            if loop is None or thread is None or service is None:
                return
            try:
                asyncio.run_coroutine_threadsafe(service.aclose(), loop).result(
                    timeout=self._config.timeout
                )
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                loop.close()

    def create_room(
        self,
        name: str,
        *,
        empty_timeout: timedelta | None = None,
        max_participants: int | None = None,
        metadata: str | None = None,
    ) -> RoomInfo:
        """See :meth:`AsyncRoomService.create_room`."""
        return self._call(
            lambda rooms: rooms.create_room(
                name,
                empty_timeout=empty_timeout,
                max_participants=max_participants,
                metadata=metadata,
            )
        )

    def list_rooms(self, names: Iterable[str] | None = None) -> list[RoomInfo]:
        """See :meth:`AsyncRoomService.list_rooms`."""
        # Materialised here: a generator must not be consumed on another thread.
        chosen = None if names is None or isinstance(names, str) else list(names)
        return self._call(lambda rooms: rooms.list_rooms(names if chosen is None else chosen))

    def delete_room(self, name: str) -> None:
        """See :meth:`AsyncRoomService.delete_room`."""
        self._call(lambda rooms: rooms.delete_room(name))

    def list_participants(self, room: str) -> list[ParticipantInfo]:
        """See :meth:`AsyncRoomService.list_participants`."""
        return self._call(lambda rooms: rooms.list_participants(room))

    def remove_participant(self, room: str, identity: str) -> None:
        """See :meth:`AsyncRoomService.remove_participant`."""
        self._call(lambda rooms: rooms.remove_participant(room, identity))

    def _call(self, call: Callable[[AsyncRoomService], Coroutine[Any, Any, _T]]) -> _T:
        loop, service = self._started()
        future: Future[_T] = asyncio.run_coroutine_threadsafe(call(service), loop)
        try:
            return future.result()
        except BaseException:
            # Interrupted while waiting (Ctrl-C): don't leave the call running.
            future.cancel()
            raise

    def _started(self) -> tuple[asyncio.AbstractEventLoop, AsyncRoomService]:
        with self._lock:
            if self._loop is None or self._service is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="infra-lib-livekit", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
                self._service = AsyncRoomService(self._config)
            return self._loop, self._service

    def _forget_after_fork(self) -> None:
        # The child has one thread, so no lock is needed, and the old one may
        # have been held by a parent thread at the moment of the fork.
        self._lock = threading.Lock()
        if self._loop is not None:
            _INHERITED.append((self._loop, self._thread, self._service))
        self._loop = self._thread = self._service = None


# Facades in this process, for the fork hook; weak, so they are still freed.
_LIVE: weakref.WeakSet[RoomService] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for service in list(_LIVE):
        service._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _seconds(what: str, value: timedelta) -> int:
    if not isinstance(value, timedelta):
        raise ConfigError(f"{what} must be a datetime.timedelta, not {value!r}.")
    seconds = int(value.total_seconds())
    if seconds < 1:
        raise ConfigError(f"{what} must be at least one second, not {value}.")
    return seconds


def _scrub(text: str, secret: str) -> str:
    return _JWT.sub("<token>", text.replace(secret, "********"))


def _timestamp(seconds: int, milliseconds: int) -> datetime:
    if milliseconds:
        return datetime.fromtimestamp(milliseconds / 1000, UTC)
    return datetime.fromtimestamp(seconds, UTC)


def _room_info(room: api.Room) -> RoomInfo:
    return RoomInfo(
        name=room.name,
        sid=room.sid,
        num_participants=room.num_participants,
        max_participants=room.max_participants or None,
        empty_timeout=timedelta(seconds=room.empty_timeout),
        metadata=room.metadata,
        creation_time=_timestamp(room.creation_time, room.creation_time_ms),
    )


def _participant_info(participant: api.ParticipantInfo) -> ParticipantInfo:
    return ParticipantInfo(
        identity=participant.identity,
        name=participant.name,
        state=cast(ParticipantState, api.ParticipantInfo.State.Name(participant.state).lower()),
        joined_at=_timestamp(participant.joined_at, participant.joined_at_ms),
    )
