"""Redis DB allocation and ACL users against the stack's real Redis.

Each test keeps its registry under a key of its own and deletes it, and
names its ACL users ``test-acl-<uuid>``: the real registry, the DBs' data and
other users are never touched.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import redis
import redis.exceptions
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from infra_lib.errors import (
    AllocationConflict,
    CapacityExhausted,
    ConfigError,
    ServiceUnavailable,
)
from infra_lib.redis import (
    DEFAULT_REGISTRY_KEY,
    DEFAULT_SERVICE_COMMANDS,
    Allocation,
    Change,
    RedisConfig,
    RedisDbAllocator,
    delete_acl_user,
    ensure_acl_user,
    validate_service_name,
)
from infra_lib.stack.settings import StackSettings
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

_VALID_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@pytest.fixture
def config(settings: StackSettings) -> RedisConfig:
    return RedisConfig.from_stack(settings)


@pytest.fixture
def registry_key(config: RedisConfig) -> Iterator[str]:
    key = f"infra:test-registry:{uuid4().hex}"
    yield key
    with RedisDbAllocator(config, registry_key=key) as allocator:
        registry_db = allocator.registry_db
    with config.client(registry_db) as client:
        client.delete(key)


@pytest.fixture
def allocator(config: RedisConfig, registry_key: str) -> Iterator[RedisDbAllocator]:
    with RedisDbAllocator(config, registry_key=registry_key) as allocator:
        yield allocator


@pytest.fixture
def acl_user(config: RedisConfig) -> Iterator[str]:
    username = f"test-acl-{uuid4().hex}"
    yield username
    delete_acl_user(config, username)


# -- allocation ---------------------------------------------------------------


def test_registry_is_the_last_db(allocator: RedisDbAllocator, settings: StackSettings) -> None:
    assert allocator.databases == settings.redis_databases
    assert allocator.registry_db == settings.redis_databases - 1


def test_allocate_is_stable_and_idempotent(
    allocator: RedisDbAllocator, config: RedisConfig, registry_key: str
) -> None:
    first = allocator.allocate("board-service")
    assert first.created
    assert first.service == "board-service"
    assert 0 <= first.db < allocator.registry_db

    again = allocator.allocate("board-service")
    assert (again.db, again.created) == (first.db, False)

    # Another process's allocator (a fresh connection pool) sees the same number.
    with RedisDbAllocator(config, registry_key=registry_key) as other:
        assert other.allocate("board-service").db == first.db
        assert other.allocate("chat-service").db != first.db


def test_list_and_release(allocator: RedisDbAllocator) -> None:
    assert allocator.list() == {}
    allocator.allocate("noti-service", db=9)
    allocator.allocate("auth-service", db=0)
    chat = allocator.allocate("chat-service")
    listed = allocator.list()
    assert listed == {"auth-service": 0, "chat-service": chat.db, "noti-service": 9}
    assert list(listed.values()) == sorted(listed.values())

    assert allocator.release("auth-service") is True
    assert allocator.release("auth-service") is False
    assert "auth-service" not in allocator.list()
    # The freed number is the lowest free one again.
    assert allocator.allocate("video-service").db == 0


def test_explicit_number_is_honoured(allocator: RedisDbAllocator) -> None:
    claimed = allocator.allocate("board-service", db=1)
    assert (claimed.db, claimed.created) == (1, True)
    assert allocator.allocate("board-service", db=1) == Allocation("board-service", 1, False)
    # Without a number a service keeps the one it holds.
    assert allocator.allocate("board-service").db == 1
    # Automatic allocation goes around claimed numbers.
    assert allocator.allocate("other-service").db == 0
    assert allocator.allocate("third-service").db == 2


def test_explicit_number_held_by_another_service_names_both(allocator: RedisDbAllocator) -> None:
    allocator.allocate("chat-service", db=2)
    with pytest.raises(AllocationConflict) as caught:
        allocator.allocate("noti-service", db=2)
    message = str(caught.value)
    assert "'chat-service'" in message
    assert "'noti-service'" in message
    assert "DB 2" in message
    assert allocator.list() == {"chat-service": 2}


def test_service_cannot_hold_two_numbers(allocator: RedisDbAllocator) -> None:
    allocator.allocate("chat-service", db=2)
    with pytest.raises(AllocationConflict, match=r"already holds Redis DB 2.*release"):
        allocator.allocate("chat-service", db=3)
    allocator.release("chat-service")
    assert allocator.allocate("chat-service", db=3).db == 3


def test_out_of_range_numbers_are_config_errors(allocator: RedisDbAllocator) -> None:
    databases = allocator.databases
    for db in (-1, databases, databases + 1000):
        with pytest.raises(ConfigError, match=rf"out of range.*{databases} databases"):
            allocator.allocate("board-service", db=db)
    assert allocator.list() == {}


def test_registry_db_cannot_be_allocated(allocator: RedisDbAllocator) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        allocator.allocate("board-service", db=allocator.registry_db)


def test_registry_db_outside_the_server_is_a_config_error(
    config: RedisConfig, registry_key: str
) -> None:
    with (
        RedisDbAllocator(config, registry_key=registry_key, registry_db=16) as allocator,
        pytest.raises(ConfigError, match="registry_db 16 is out of range"),
    ):
        allocator.allocate("board-service")


_HOSTILE_NAMES = st.one_of(
    st.text(max_size=80).filter(lambda name: not _VALID_NAME.fullmatch(name)),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=65, max_size=200),
)


@hypothesis_settings(
    max_examples=200,
    deadline=None,
    # The allocator is only read here (names are refused before any I/O).
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=_HOSTILE_NAMES)
@example(name="")
@example(name="svc name")
@example(name="svc'; DEL x; --")
@example(name='svc"')
@example(name="Board-Service")
@example(name="sérvice")
@example(name="svc\n")
@example(name="svc\x00")
@example(name="-svc")
@example(name="_svc")
@example(name="a" * 65)
def test_hostile_service_names_are_refused(allocator: RedisDbAllocator, name: str) -> None:
    with pytest.raises(ConfigError, match="invalid service name"):
        allocator.allocate(name)
    with pytest.raises(ConfigError, match="invalid service name"):
        allocator.release(name)


@given(name=st.from_regex(_VALID_NAME, fullmatch=True))
def test_valid_service_names_are_accepted(name: str) -> None:
    assert validate_service_name(name) == name


def test_exhaustion_says_how_many_and_what_to_do(allocator: RedisDbAllocator) -> None:
    allocatable = allocator.databases - 1
    numbers = {allocator.allocate(f"svc-{i}").db for i in range(allocatable)}
    assert numbers == set(range(allocator.databases)) - {allocator.registry_db}

    with pytest.raises(CapacityExhausted) as caught:
        allocator.allocate("one-too-many")
    message = str(caught.value)
    assert f"{allocator.databases} databases" in message
    assert "REDIS_DATABASES" in message
    assert "release" in message
    assert "'one-too-many'" in message

    # Services that already hold a number still get it back when full.
    assert allocator.allocate("svc-0").created is False
    allocator.release("svc-3")
    assert allocator.allocate("one-too-many").db == 3


def _allocate_in_child(
    config: RedisConfig,
    registry_key: str,
    service: str,
    barrier: Any,
    results: Any,
) -> None:
    """Runs in a spawned process: one allocation, started with all the others."""
    try:
        with RedisDbAllocator(config, registry_key=registry_key) as allocator:
            # Connect and learn the layout first, so the race is only the allocation.
            allocator.list()
            barrier.wait(timeout=120)
            allocation = allocator.allocate(service)
        results.put((service, allocation.db, allocation.created, None))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        results.put((service, -1, False, f"{type(exc).__name__}: {exc}"))


def test_concurrent_allocations_from_separate_processes(
    allocator: RedisDbAllocator, config: RedisConfig, registry_key: str
) -> None:
    processes = 20
    services = allocator.databases - 1  # 15 distinct services fill every free number
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(
            target=_allocate_in_child,
            args=(config, registry_key, f"svc-{i % services}", barrier, results),
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=180) for _ in workers]
    except queue.Empty:
        pytest.fail("a child process did not report an allocation in time")
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()

    errors = [error for *_, error in outcomes if error]
    assert not errors
    by_service: dict[str, set[int]] = {}
    created: dict[str, int] = {}
    for service, db, was_created, _ in outcomes:
        by_service.setdefault(service, set()).add(db)
        created[service] = created.get(service, 0) + int(was_created)

    assert len(by_service) == services
    # Same service -> same number in every process; exactly one process claimed it.
    assert all(len(numbers) == 1 for numbers in by_service.values())
    assert all(count == 1 for count in created.values())
    # Different services -> different numbers, never the registry's.
    numbers = [next(iter(n)) for n in by_service.values()]
    assert len(set(numbers)) == services
    assert allocator.registry_db not in numbers
    assert allocator.list() == {s: next(iter(n)) for s, n in by_service.items()}


# -- failures to reach the server -----------------------------------------------


def test_wrong_password_is_service_unavailable_without_the_password(
    config: RedisConfig, registry_key: str
) -> None:
    wrong = f"wrong-{secrets.token_urlsafe(16)}"
    bad = RedisConfig(host=config.host, port=config.port, password=wrong)
    with (
        RedisDbAllocator(bad, registry_key=registry_key) as allocator,
        pytest.raises(ServiceUnavailable) as caught,
    ):
        allocator.allocate("board-service")
    error = caught.value
    assert error.service == "redis"
    assert isinstance(error.__cause__, redis.exceptions.AuthenticationError)
    assert f"{config.host}:{config.port}" in str(error)
    assert "REDIS_PASSWORD" in str(error)
    assert wrong not in str(error)
    assert config.password is not None
    assert config.password not in str(error)


def test_unreachable_port_is_service_unavailable(config: RedisConfig, registry_key: str) -> None:
    port = free_port()
    nowhere = RedisConfig(host="127.0.0.1", port=port, password=config.password)
    with (
        RedisDbAllocator(nowhere, registry_key=registry_key) as allocator,
        pytest.raises(ServiceUnavailable, match=rf"127\.0\.0\.1:{port}.*inv status") as caught,
    ):
        allocator.allocate("board-service")
    assert caught.value.service == "redis"
    assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)


# -- ACL users ------------------------------------------------------------------


def _as_user(config: RedisConfig, username: str, password: str, db: int) -> redis.Redis:
    user_config = RedisConfig(
        host=config.host, port=config.port, username=username, password=password
    )
    return user_config.client(db, decode_responses=True)


def test_acl_user_is_idempotent_and_follows_password_changes(
    config: RedisConfig, acl_user: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first, second = secrets.token_urlsafe(24), secrets.token_urlsafe(24)

    assert ensure_acl_user(config, acl_user, first) is Change.CREATED
    assert ensure_acl_user(config, acl_user, first) is Change.UNCHANGED
    assert ensure_acl_user(config, acl_user, second) == "changed"
    assert ensure_acl_user(config, acl_user, second) == "unchanged"

    with _as_user(config, acl_user, second, 0) as client:
        assert client.ping()
    with (
        _as_user(config, acl_user, first, 0) as client,
        pytest.raises(redis.exceptions.AuthenticationError),
    ):
        client.ping()
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert first not in logged
    assert second not in logged


def test_acl_user_works_in_its_db_but_cannot_touch_the_server(
    config: RedisConfig, allocator: RedisDbAllocator, acl_user: str
) -> None:
    password = secrets.token_urlsafe(24)
    db = allocator.allocate("acl-test-service").db
    ensure_acl_user(config, acl_user, password)
    key = f"infra:test-acl:{uuid4().hex}"
    with _as_user(config, acl_user, password, db) as client:
        try:
            assert client.set(key, "value", ex=60)
            assert client.get(key) == "value"
            refused: list[Callable[[], object]] = [
                client.flushall,
                client.flushdb,
                lambda: client.config_get("databases"),
                lambda: client.keys("*"),
                client.acl_list,
            ]
            for command in refused:
                with pytest.raises(redis.exceptions.NoPermissionError):
                    command()
            assert client.info("server")["redis_version"]
        finally:
            client.delete(key)


def test_acl_key_patterns_confine_a_service_to_its_prefix(
    config: RedisConfig, acl_user: str
) -> None:
    password = secrets.token_urlsafe(24)
    prefix = f"infra:test-acl:{uuid4().hex}"
    assert (
        ensure_acl_user(config, acl_user, password, key_patterns=(f"{prefix}:*",), channels=())
        is Change.CREATED
    )
    assert (
        ensure_acl_user(config, acl_user, password, key_patterns=(f"{prefix}:*",), channels=())
        is Change.UNCHANGED
    )
    with _as_user(config, acl_user, password, 0) as client:
        try:
            assert client.set(f"{prefix}:mine", "1", ex=60)
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.set(f"{prefix}-not-mine", "1", ex=60)
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.publish("events", "hello")
        finally:
            client.delete(f"{prefix}:mine")
    # Widening the patterns again is a change.
    assert ensure_acl_user(config, acl_user, password) is Change.CHANGED


def test_acl_user_through_a_bytes_client(config: RedisConfig, acl_user: str) -> None:
    password = secrets.token_urlsafe(24)
    with config.client(0) as client:
        assert ensure_acl_user(client, acl_user, password) is Change.CREATED
        assert ensure_acl_user(client, acl_user, password) is Change.UNCHANGED
        assert delete_acl_user(client, acl_user) is True
        assert delete_acl_user(client, acl_user) is False


def test_a_disabled_user_is_enabled_again(config: RedisConfig, acl_user: str) -> None:
    password = secrets.token_urlsafe(24)
    ensure_acl_user(config, acl_user, password)
    with config.client(0) as client:
        client.acl_setuser(acl_user, enabled=False)
    assert ensure_acl_user(config, acl_user, password) is Change.CHANGED
    with _as_user(config, acl_user, password, 0) as client:
        assert client.ping()


def test_bad_acl_rules_are_config_errors_and_change_nothing(
    config: RedisConfig, acl_user: str
) -> None:
    password = secrets.token_urlsafe(24)
    ensure_acl_user(config, acl_user, password)
    with pytest.raises(ConfigError, match="rejected the ACL rules") as caught:
        ensure_acl_user(config, acl_user, password, commands=("+@no-such-category",))
    assert password not in str(caught.value)
    assert ensure_acl_user(config, acl_user, password) is Change.UNCHANGED


@pytest.mark.parametrize("username", ["default", "", "has space", "-dash-first"])
def test_unmanageable_user_names_are_refused(config: RedisConfig, username: str) -> None:
    with pytest.raises(ConfigError):
        ensure_acl_user(config, username, "pw")
    with pytest.raises(ConfigError):
        delete_acl_user(config, username)


def test_allocator_works_without_config_permission(
    config: RedisConfig, settings: StackSettings, registry_key: str, acl_user: str
) -> None:
    # Like managed Redis: CONFIG is refused, so the DB count comes from SELECT.
    password = secrets.token_urlsafe(24)
    ensure_acl_user(config, acl_user, password, commands=DEFAULT_SERVICE_COMMANDS)
    limited = RedisConfig(host=config.host, port=config.port, username=acl_user, password=password)
    with RedisDbAllocator(limited, registry_key=registry_key) as allocator:
        assert allocator.databases == settings.redis_databases
        assert allocator.registry_db == settings.redis_databases - 1
        assert allocator.allocate("board-service", db=1).db == 1
    with RedisDbAllocator(config, registry_key=registry_key) as admin:
        assert admin.list() == {"board-service": 1}


def test_preview_answers_like_allocate_and_claims_nothing(allocator: RedisDbAllocator) -> None:
    allocator.allocate("chat-service", db=2)
    assert allocator.preview("chat-service") == Allocation("chat-service", 2, False)
    assert allocator.preview("board-service", db=1) == Allocation("board-service", 1, True)
    # Numbers about to be claimed count as taken.
    pending = {"board-service": 0, "noti-service": 1}
    assert allocator.preview("auto-service", pending=pending).db == 3
    with pytest.raises(AllocationConflict, match="'chat-service'"):
        allocator.preview("noti-service", db=2)
    with pytest.raises(AllocationConflict, match="already holds Redis DB 2"):
        allocator.preview("chat-service", db=3)
    with pytest.raises(ConfigError, match="out of range"):
        allocator.preview("board-service", db=allocator.databases + 83)
    assert allocator.list() == {"chat-service": 2}


def test_preview_of_a_full_server_is_capacity_exhausted(allocator: RedisDbAllocator) -> None:
    pending = {f"s{n}-service": n for n in range(allocator.databases) if n != allocator.registry_db}
    with pytest.raises(CapacityExhausted):
        allocator.preview("one-more-service", pending=pending)
    assert allocator.list() == {}


# -- key prefixes: a service's user reaches its own keys only, in every DB ------


def _prefix_env(settings: StackSettings, service: str, tmp_path: Path) -> dict[str, str]:
    """Provision ``service``'s Redis access as `inv provision` does; its env values."""
    from infra_lib.manifest import load_manifest
    from infra_lib.provisioning import env_path, provision, read_service_env

    from .conftest import ROOT

    # A copy of the service's env file, so its Redis password is kept (not
    # rotated) and the real file keeps the settings of the other backends.
    real = env_path(ROOT / "env" / settings.compose_project_name, service)
    if real.is_file():
        shutil.copy(real, env_path(tmp_path, service))
    provision(
        load_manifest(ROOT / "infra.toml"),
        env_dir=tmp_path,
        postgres=None,
        redis=RedisConfig.from_stack(settings),
        services=[service],
    )
    return read_service_env(tmp_path, service).values


def _refused(call: Callable[[], object]) -> None:
    # NOPERM for commands and keys; a script touching a foreign key is a plain error.
    with pytest.raises(redis.exceptions.ResponseError, match=r"(?i)no permissions|can't access"):
        call()


def _key_refused(client: redis.Redis, own: str, key: str) -> None:
    _refused(lambda: client.get(key))
    _refused(lambda: client.set(key, "board was here"))
    _refused(lambda: client.delete(key))
    _refused(lambda: client.hgetall(key))
    _refused(lambda: client.copy(own, key))
    _refused(lambda: client.eval("return redis.call('GET', KEYS[1])", 1, key))
    # A script that does not declare the key is checked when it calls.
    _refused(lambda: client.eval(f"return redis.call('GET', '{key}')", 0))


def _subscribe(client: redis.Redis, channel: str, *, pattern: bool = False) -> object:
    # The refusal is the reply to SUBSCRIBE, which redis-py reads with the next message.
    pubsub: Any = client.pubsub()  # type: ignore[no-untyped-call]
    with pubsub:
        (pubsub.psubscribe if pattern else pubsub.subscribe)(channel)
        return pubsub.get_message(timeout=2)


def test_board_user_cannot_reach_outside_its_prefix_in_any_db(
    settings: StackSettings, config: RedisConfig, tmp_path: Path
) -> None:
    board = _prefix_env(settings, "board-service", tmp_path)
    chat = _prefix_env(settings, "chat-service", tmp_path)
    prefix = board["REDIS_KEY_PREFIX"]
    assert prefix == "board-service:"
    assert chat["REDIS_KEY_PREFIX"] == "chat-service:"
    tag = uuid4().hex
    foreign = [f"chat-service:{tag}", f"{tag}", f"board-service-x:{tag}", DEFAULT_REGISTRY_KEY]
    registry_db = settings.redis_databases - 1
    for db in range(settings.redis_databases):
        with config.client(db) as admin:
            for key in foreign[:-1]:
                admin.set(key, "theirs", ex=60)
        url = board["REDIS_URL"].rsplit("/", 1)[0] + f"/{db}"
        with redis.Redis.from_url(url, decode_responses=True) as client:
            try:
                own = f"{prefix}{tag}"
                assert client.set(own, "mine", ex=60)
                assert client.get(own) == "mine"
                for key in foreign:
                    _key_refused(client, own, key)
                for channel in (f"chat-service:{tag}", "events", "__keyspace@0__:*"):
                    _refused(lambda channel=channel: client.publish(channel, "hello"))
                    _refused(lambda channel=channel: _subscribe(client, channel))
                _refused(lambda: _subscribe(client, "*", pattern=True))
                assert client.publish(f"{prefix}{tag}", "to myself") == 0
                for channel, pattern in ((f"{prefix}{tag}", False), (f"{prefix}*", True)):
                    confirmed: Any = _subscribe(client, channel, pattern=pattern)
                    assert confirmed["data"] == 1
            finally:
                client.delete(f"{prefix}{tag}")
        with config.client(db, decode_responses=True) as admin:
            for key in foreign[:-1]:
                # Nothing was changed, and nothing of board's was left behind.
                assert admin.get(key) == "theirs"
                admin.delete(key)
    with config.client(registry_db, decode_responses=True) as admin:
        assert admin.hget(DEFAULT_REGISTRY_KEY, "board-service") == board["REDIS_DB"]


def test_service_user_cannot_run_server_wide_commands(
    settings: StackSettings, tmp_path: Path
) -> None:
    board = _prefix_env(settings, "board-service", tmp_path)
    with redis.Redis.from_url(board["REDIS_URL"], decode_responses=True) as client:
        key = f"{board['REDIS_KEY_PREFIX']}{uuid4().hex}"
        client.set(key, "1", ex=60)
        try:
            refused: list[Callable[[], object]] = [
                # Key patterns do not filter these replies: other services' key names.
                lambda: client.scan(0),
                client.randomkey,
                lambda: client.keys("*"),
                lambda: client.pubsub_channels(),
                lambda: client.execute_command("CLIENT", "TRACKING", "ON", "BCAST"),
                # These change other services' data or shared server state.
                client.flushdb,
                client.flushall,
                lambda: client.swapdb(0, 1),
                lambda: client.move(key, 2),
                client.script_flush,
                client.script_kill,
                lambda: client.function_load(
                    "#!lua name=boardlib\nredis.register_function('f', function() return 1 end)"
                ),
                client.function_flush,
                lambda: client.function_delete("anylib"),
                lambda: client.execute_command("FUNCTION", "KILL"),
                lambda: client.config_get("*"),
                client.acl_list,
            ]
            for command in refused:
                _refused(command)
            # What a service needs stays: its own keys, scripts on them, INFO.
            assert client.eval("return redis.call('INCR', KEYS[1])", 1, key) == 2
            assert client.info("server")["redis_version"]
            assert client.dbsize() >= 1
        finally:
            client.delete(key)


def test_registry_and_test_namespace_are_outside_every_service_prefix() -> None:
    from infra_lib.manifest import load_manifest
    from infra_lib.redis.keys import RESERVED_PREFIX, TEST_PREFIX

    from .conftest import ROOT

    manifest = load_manifest(ROOT / "infra.toml")
    assert DEFAULT_REGISTRY_KEY.startswith(RESERVED_PREFIX)
    assert TEST_PREFIX.startswith(RESERVED_PREFIX)
    for service in manifest:
        if service.redis is not None:
            prefix = service.redis.prefix_for(service.name)
            assert not DEFAULT_REGISTRY_KEY.startswith(prefix)
            assert not prefix.startswith(RESERVED_PREFIX)
