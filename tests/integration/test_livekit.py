"""Tokens, rooms and webhooks against the stack's real LiveKit server.

Rooms are named ``test-<uuid>`` and deleted afterwards; participants join
with the real-time SDK (``livekit.rtc``), so a token is proven by the server
letting its holder in, not by decoding it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import multiprocessing
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from google.protobuf.json_format import MessageToJson
from livekit import api, rtc

from infra_lib.errors import ConfigError, LiveKitError, ServiceUnavailable, WebhookRejected
from infra_lib.livekit import (
    AsyncRoomService,
    LiveKitConfig,
    RoomInfo,
    RoomService,
    TokenFactory,
    verify_webhook,
)
from infra_lib.stack.settings import StackSettings
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

WRONG_SECRET = "w" * 40


@pytest.fixture(scope="module")
def config(settings: StackSettings) -> LiveKitConfig:
    return LiveKitConfig.from_stack(settings)


@pytest.fixture(scope="module")
def rooms(config: LiveKitConfig) -> Iterator[RoomService]:
    with RoomService(config) as service:
        yield service


@pytest.fixture
def room_name(rooms: RoomService) -> Iterator[str]:
    name = f"test-{uuid4()}"
    yield name
    rooms.delete_room(name)


@pytest.fixture
def factory(config: LiveKitConfig) -> TokenFactory:
    return TokenFactory(config)


def wrong_secret(config: LiveKitConfig) -> LiveKitConfig:
    return replace(config, api_secret=WRONG_SECRET)


# --- rooms through the synchronous facade ---------------------------------------------


def test_create_list_delete(rooms: RoomService, room_name: str) -> None:
    created = rooms.create_room(room_name)
    assert isinstance(created, RoomInfo)
    assert created.name == room_name
    assert created.sid.startswith("RM_")
    assert created.num_participants == 0
    assert abs(created.creation_time - datetime.now(UTC)) < timedelta(minutes=1)

    listed = rooms.list_rooms([room_name])
    assert [room.sid for room in listed] == [created.sid]
    assert created.sid in {room.sid for room in rooms.list_rooms()}

    rooms.delete_room(room_name)
    assert rooms.list_rooms([room_name]) == []


def test_room_settings_round_trip(rooms: RoomService, room_name: str) -> None:
    created = rooms.create_room(
        room_name,
        empty_timeout=timedelta(minutes=2),
        max_participants=3,
        metadata='{"board": 7}',
    )
    (listed,) = rooms.list_rooms([room_name])
    for room in (created, listed):
        assert room.max_participants == 3
        assert room.empty_timeout == timedelta(seconds=120)
        assert room.metadata == '{"board": 7}'


def test_unset_room_settings_take_the_servers_defaults(rooms: RoomService, room_name: str) -> None:
    created = rooms.create_room(room_name)
    assert created.max_participants is None
    assert created.metadata == ""
    assert created.empty_timeout > timedelta(0)


def test_creating_an_existing_room_returns_it_unchanged(rooms: RoomService, room_name: str) -> None:
    first = rooms.create_room(room_name, max_participants=3, metadata="first")
    again = rooms.create_room(room_name, max_participants=5, metadata="second")
    assert again.sid == first.sid
    assert (again.max_participants, again.metadata) == (3, "first")


def test_missing_rooms_and_participants_are_not_errors(rooms: RoomService) -> None:
    missing = f"test-{uuid4()}"
    rooms.delete_room(missing)
    rooms.remove_participant(missing, "nobody")
    assert rooms.list_participants(missing) == []
    assert rooms.list_rooms([missing]) == []
    # The server lists every room for an empty filter; no names means no rooms.
    assert rooms.list_rooms([]) == []


def test_invalid_arguments_fail_before_any_call(rooms: RoomService) -> None:
    with pytest.raises(ConfigError, match="max_participants"):
        rooms.create_room(f"test-{uuid4()}", max_participants=0)
    with pytest.raises(ConfigError, match="room must be a non-empty"):
        rooms.create_room(" ")
    with pytest.raises(ConfigError, match="empty_timeout"):
        rooms.create_room(f"test-{uuid4()}", empty_timeout=timedelta(0))


def test_sync_facade_works_inside_a_running_event_loop(rooms: RoomService, room_name: str) -> None:
    def view() -> list[RoomInfo]:
        # A plain function, as a Django view or Celery task would be, that
        # happens to run while this thread's event loop is running.
        rooms.create_room(room_name, metadata="from a loop")
        return rooms.list_rooms([room_name])

    async def main() -> list[RoomInfo]:
        asyncio.get_running_loop()
        return view()

    (room,) = asyncio.run(main())
    assert room.metadata == "from a loop"


def test_sync_facade_serves_many_threads(rooms: RoomService) -> None:
    names = [f"test-{uuid4()}" for _ in range(8)]

    def worker(name: str) -> list[str]:
        rooms.create_room(name)
        try:
            return [room.name for room in rooms.list_rooms([name])]
        finally:
            rooms.delete_room(name)

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        seen = list(pool.map(worker, names, timeout=60))
    assert seen == [[name] for name in names]
    assert rooms.list_rooms(names) == []


def test_sync_facade_can_be_used_again_after_close(config: LiveKitConfig, room_name: str) -> None:
    service = RoomService(config)
    service.create_room(room_name)
    service.close()
    service.close()  # a second close is a no-op
    try:
        # A closed facade opens a new session on its next call.
        assert room_name in {room.name for room in service.list_rooms()}
    finally:
        service.close()


def _create_in_child(service: RoomService, name: str) -> None:
    service.create_room(name)


def test_a_forked_child_gets_a_loop_of_its_own(rooms: RoomService, room_name: str) -> None:
    # Celery's prefork pool: the parent used the facade, so its loop thread is
    # running; the child inherits the object but not the thread.
    rooms.list_rooms()
    child = multiprocessing.get_context("fork").Process(
        target=_create_in_child, args=(rooms, room_name)
    )
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung on the parent's event loop")
    assert child.exitcode == 0
    assert [room.name for room in rooms.list_rooms([room_name])] == [room_name]


# --- the async client -----------------------------------------------------------------


def test_async_create_list_delete(config: LiveKitConfig) -> None:
    name = f"test-{uuid4()}"

    async def main() -> tuple[RoomInfo, list[RoomInfo], list[RoomInfo]]:
        async with AsyncRoomService(config) as rooms:
            try:
                created = await rooms.create_room(name, max_participants=2, metadata="async")
                listed = await rooms.list_rooms([name])
            finally:
                await rooms.delete_room(name)
            return created, listed, await rooms.list_rooms([name])

    created, listed, after = asyncio.run(main())
    assert (created.name, created.max_participants, created.metadata) == (name, 2, "async")
    assert [room.sid for room in listed] == [created.sid]
    assert after == []


# --- tokens accepted and refused by the server ----------------------------------------


def test_a_join_token_lets_a_participant_in(
    rooms: RoomService, factory: TokenFactory, room_name: str
) -> None:
    minted = factory.join_token(room_name, "alice", name="Alice", metadata="m")

    async def join_and_look() -> None:
        room = rtc.Room()
        await asyncio.wait_for(room.connect(minted.url, minted.token), timeout=20)
        try:
            assert room.local_participant.identity == "alice"
            assert room.name == room_name
            # A blocking call from inside the loop, as a sync caller would make.
            (participant,) = await asyncio.to_thread(rooms.list_participants, room_name)
            assert participant.identity == "alice"
            assert participant.name == "Alice"
            assert participant.state in {"joining", "joined", "active"}
            assert abs(participant.joined_at - datetime.now(UTC)) < timedelta(minutes=1)
            await asyncio.to_thread(rooms.remove_participant, room_name, "alice")
            assert await asyncio.to_thread(rooms.list_participants, room_name) == []
        finally:
            await room.disconnect()

    asyncio.run(join_and_look())


def test_a_token_signed_with_another_secret_is_refused(
    config: LiveKitConfig, rooms: RoomService, room_name: str
) -> None:
    forged = TokenFactory(wrong_secret(config)).join_token(room_name, "mallory")

    async def try_to_join() -> None:
        room = rtc.Room()
        try:
            with pytest.raises(rtc.ConnectError, match="401"):
                await asyncio.wait_for(room.connect(forged.url, forged.token), timeout=20)
        finally:
            await room.disconnect()

    asyncio.run(try_to_join())
    assert rooms.list_participants(room_name) == []


def test_an_admin_token_is_scoped_to_its_room(
    config: LiveKitConfig, rooms: RoomService, factory: TokenFactory, room_name: str
) -> None:
    rooms.create_room(room_name)
    other = f"test-{uuid4()}"
    token = factory.admin_token(room_admin_room=room_name, ttl=timedelta(minutes=1))

    async def main() -> None:
        async with api.LiveKitAPI.with_token(token, config.api_url) as client:
            response = await client.room.list_participants(
                api.ListParticipantsRequest(room=room_name)
            )
            assert list(response.participants) == []
            with pytest.raises(api.TwirpError) as refused:
                await client.room.list_participants(api.ListParticipantsRequest(room=other))
            assert refused.value.status in {401, 403}

    asyncio.run(main())


# --- failures are infra_lib errors ----------------------------------------------------


def test_wrong_secret_is_service_unavailable_naming_the_variables(config: LiveKitConfig) -> None:
    with RoomService(wrong_secret(config)) as rooms, pytest.raises(ServiceUnavailable) as info:
        rooms.list_rooms()
    message = str(info.value)
    assert info.value.service == "livekit"
    assert "LIVEKIT_API_KEY" in message
    assert "LIVEKIT_API_SECRET" in message
    assert WRONG_SECRET not in message
    assert config.api_secret not in message
    assert isinstance(info.value.__cause__, api.TwirpError)


def test_unreachable_server_fails_fast(config: LiveKitConfig) -> None:
    port = free_port()
    dead = LiveKitConfig(
        url=f"ws://127.0.0.1:{port}",
        api_key=config.api_key,
        api_secret=config.api_secret,
        timeout=2.0,
    )
    started = time.monotonic()
    with RoomService(dead) as rooms, pytest.raises(ServiceUnavailable, match="cannot reach"):
        rooms.list_rooms()
    assert time.monotonic() - started < 2.0


def test_a_server_that_never_answers_times_out(config: LiveKitConfig) -> None:
    # Accepts connections (the kernel does, from the backlog) but never replies.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        mute = LiveKitConfig(
            url=f"ws://127.0.0.1:{port}",
            api_key=config.api_key,
            api_secret=config.api_secret,
            timeout=0.5,
        )
        started = time.monotonic()
        with RoomService(mute) as rooms, pytest.raises(ServiceUnavailable, match="did not answer"):
            rooms.create_room(f"test-{uuid4()}")
        assert time.monotonic() - started < 5.0


def test_refusals_other_than_credentials_are_livekit_errors(config: LiveKitConfig) -> None:
    # A path prefix the server does not serve: a refusal, not an outage.
    elsewhere = replace(config, api_url=config.api_url + "/not-livekit")
    with RoomService(elsewhere) as rooms, pytest.raises(LiveKitError) as info:
        rooms.list_rooms()
    assert info.value.status == 404


# --- webhooks -------------------------------------------------------------------------


def signed_webhook(
    config: LiveKitConfig, *, secret: str | None = None, key: str | None = None
) -> tuple[bytes, str]:
    """A webhook as livekit-server sends it: protobuf JSON, signed sha256 of the body."""
    event = api.WebhookEvent(
        event="participant_joined",
        id=f"EV_{uuid4().hex[:12]}",
        created_at=int(time.time()),
        room=api.Room(name="standup", sid="RM_abc123"),
        participant=api.ParticipantInfo(identity="alice", sid="PA_abc123"),
    )
    body = MessageToJson(event).encode()
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    token = (
        api.AccessToken(key or config.api_key, secret or config.api_secret)
        .with_ttl(timedelta(minutes=5))
        .with_sha256(digest)
        .to_jwt()
    )
    return body, token


def test_webhook_from_the_server_is_accepted(config: LiveKitConfig) -> None:
    body, token = signed_webhook(config)
    event = verify_webhook(config, body, token)
    assert event.event == "participant_joined"
    assert event.id.startswith("EV_")
    assert (event.room_name, event.room_sid) == ("standup", "RM_abc123")
    assert event.participant_identity == "alice"
    assert abs(event.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert event.raw.participant.sid == "PA_abc123"


def test_webhook_accepts_text_bodies_and_bearer_headers(config: LiveKitConfig) -> None:
    body, token = signed_webhook(config)
    assert verify_webhook(config, body.decode(), f"Bearer {token}").participant_identity == "alice"


def test_webhook_without_a_room_has_none_for_it(config: LiveKitConfig) -> None:
    body = MessageToJson(api.WebhookEvent(event="egress_ended", id="EV_x")).encode()
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    token = api.AccessToken(config.api_key, config.api_secret).with_sha256(digest).to_jwt()
    event = verify_webhook(config, body, token)
    assert (event.room_name, event.participant_identity) == (None, None)


def test_tampered_webhook_body_is_rejected(config: LiveKitConfig) -> None:
    body, token = signed_webhook(config)
    tampered = body.replace(b"alice", b"mallo")
    with pytest.raises(WebhookRejected, match="body does not match"):
        verify_webhook(config, tampered, token)


def test_webhook_signed_with_another_secret_is_rejected(config: LiveKitConfig) -> None:
    body, token = signed_webhook(config, secret=WRONG_SECRET)
    with pytest.raises(WebhookRejected, match="LIVEKIT_API_SECRET") as info:
        verify_webhook(config, body, token)
    assert config.api_secret not in str(info.value)


def test_webhook_from_another_api_key_is_rejected(config: LiveKitConfig) -> None:
    body, token = signed_webhook(config, key="APIsomeoneelse")
    with pytest.raises(WebhookRejected, match="API key"):
        verify_webhook(config, body, token)


@pytest.mark.parametrize("header", ["", None, "   ", "Bearer "])
def test_webhook_without_authorization_is_rejected(
    config: LiveKitConfig, header: str | None
) -> None:
    body, _ = signed_webhook(config)
    with pytest.raises(WebhookRejected, match="no Authorization header"):
        verify_webhook(config, body, header)


def test_webhook_token_without_a_body_hash_is_rejected(
    config: LiveKitConfig, factory: TokenFactory
) -> None:
    body, _ = signed_webhook(config)
    with pytest.raises(WebhookRejected, match="no sha256 claim"):
        verify_webhook(config, body, factory.admin_token(room_list=True))


def test_webhook_header_that_is_not_a_jwt_is_rejected(config: LiveKitConfig) -> None:
    body, _ = signed_webhook(config)
    with pytest.raises(WebhookRejected, match="not a JWT"):
        verify_webhook(config, body, "not-a-token")


def test_inv_token_prints_a_token_the_server_accepts(room_name: str) -> None:
    from .conftest import run_inv

    result = run_inv("token", "--room", room_name, "--identity", "cli-user", "--no-can-publish")
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(maxsplit=1) for line in result.stdout.splitlines())

    async def join() -> None:
        room = rtc.Room()
        await asyncio.wait_for(room.connect(fields["url:"], fields["token:"]), timeout=20)
        try:
            assert room.local_participant.identity == "cli-user"
            assert not room.local_participant.permissions.can_publish
        finally:
            await room.disconnect()

    asyncio.run(join())
