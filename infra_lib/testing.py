"""pytest plugin: isolated resources on the already-running stack.

Loaded automatically when infra-lib is installed (``pytest11`` entry point).
Each test session, and each pytest-xdist worker, gets its own PostgreSQL
database and role, Redis DB number and ACL user, bucket prefix and MinIO
user, and LiveKit room on the shared stack, all removed at the end. The
credentials a test gets are least-privilege ones, like a service's: they are
refused outside their own database, key prefix and object prefix. Nothing
starts containers per test run: the stack is the one ``inv up`` started.

A session holds a lease on its resources (:mod:`infra_lib.leases`); one
killed before its end leaves them behind, and the next session, or ``inv
test-cleanup``, removes them once their holder is gone.

Where the stack is: ``--infra-env-file PATH`` or ``INFRA_ENV_FILE`` (the
stack checkout's ``.env``), default ``./.env``. A stack that does not answer
fails the fixture that needs it (no skip).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from infra_lib.livekit.config import LiveKitConfig
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.redis.config import RedisConfig
    from infra_lib.sessions import ReclaimReport, SessionNames
    from infra_lib.stack.settings import StackSettings
    from infra_lib.storage.config import S3Config

__all__ = [
    "InfraSession",
    "IsolatedBucketPrefix",
    "IsolatedDatabase",
    "IsolatedRedis",
    "IsolatedRoom",
    "infra_bucket_prefix",
    "infra_database",
    "infra_livekit_room",
    "infra_redis",
    "infra_session",
    "infra_settings",
    "infra_worker_tag",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("infra-lib")
    group.addoption(
        "--infra-env-file",
        default=None,
        help="The stack's .env (default: $INFRA_ENV_FILE or ./.env).",
    )


@pytest.fixture(scope="session")
def infra_worker_tag(request: pytest.FixtureRequest) -> str:
    """A short tag unique to this session and xdist worker (e.g. ``gw1x3f9a2c1d``)."""
    from infra_lib.sessions import SessionNames

    return SessionNames.new(os.environ.get("PYTEST_XDIST_WORKER", "main")).tag


@pytest.fixture(scope="session")
def infra_settings(request: pytest.FixtureRequest) -> StackSettings:
    """The stack's settings, read from its env file and the environment."""
    from infra_lib.stack.settings import load_stack_settings

    option = request.config.getoption("--infra-env-file")
    path = Path(option or os.environ.get("INFRA_ENV_FILE") or ".env").resolve()
    return load_stack_settings(path, environ=os.environ)


@dataclass(frozen=True, slots=True)
class InfraSession:
    """This session's lease on the stack, under which its resources live.

    ``reclaimed`` says what was removed of dead sessions when it started.
    """

    names: SessionNames
    reclaimed: ReclaimReport
    redis_admin: RedisConfig = field(repr=False)
    postgres_admin: PostgresConfig = field(repr=False)
    storage_admin: S3Config = field(repr=False)
    #: Backends this session made resources in, removed at its end.
    used: set[str] = field(default_factory=set)


@pytest.fixture(scope="session")
def infra_session(infra_settings: StackSettings, infra_worker_tag: str) -> Iterator[InfraSession]:
    """Take a lease, reclaim dead sessions' resources, and remove this session's at the end.

    The lease is taken before anything is created and renewed while the
    session runs; a session killed with SIGKILL leaves it behind, and the
    next session (or ``inv test-cleanup``) sees that its holder is gone.
    """
    from infra_lib.leases import Heartbeat, Lease, LeaseStore
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.redis.allocator import RedisDbAllocator
    from infra_lib.redis.config import RedisConfig
    from infra_lib.sessions import Admins, SessionNames, drop_all, reclaim
    from infra_lib.storage.config import S3Config

    redis_admin = RedisConfig.from_stack(infra_settings)
    postgres_admin = PostgresConfig.from_stack(infra_settings)
    storage_admin = S3Config.from_stack(infra_settings)
    admins = Admins(redis_admin, postgres_admin, storage_admin)
    names = SessionNames(infra_worker_tag)
    with RedisDbAllocator(redis_admin) as allocator:
        registry_db = allocator.registry_db
    with LeaseStore(redis_admin, registry_db) as store:
        lease = Lease.for_this_process(names.tag)
        store.put(lease)
        heartbeat = Heartbeat(store, lease)
        heartbeat.start()
        try:
            report = reclaim(admins, exclude={names.tag})
            for error in report.errors:
                warnings.warn(f"could not reclaim a dead test session: {error}", stacklevel=1)
            session = InfraSession(names, report, redis_admin, postgres_admin, storage_admin)
            yield session
            used = Admins(
                redis_admin,
                postgres_admin if "postgres" in session.used else None,
                storage_admin if "storage" in session.used else None,
            )
            drop_all(used, names)
        finally:
            heartbeat.stop()
        # Only once everything is gone: a failed removal keeps the lease, and
        # the next session reclaims what is left once this process has ended.
        store.release(names.tag)


@dataclass(frozen=True, slots=True)
class IsolatedDatabase:
    """A database owned by a role of its own, for one session or worker.

    ``config`` logs in as that role, which can reach no other database.
    """

    name: str
    role: str
    config: PostgresConfig = field(repr=False)

    @property
    def url(self) -> str:
        """``postgresql://`` URL with the role's credentials."""
        return self.config.url()


@pytest.fixture(scope="session")
def infra_database(infra_session: InfraSession) -> IsolatedDatabase:
    """A fresh PostgreSQL database and its owner role; dropped after the session."""
    from infra_lib.sessions import create_database

    names = infra_session.names
    infra_session.used.add("postgres")
    login = create_database(infra_session.postgres_admin, names)
    return IsolatedDatabase(names.database, names.role, login)


@dataclass(frozen=True, slots=True)
class IsolatedRedis:
    """A Redis DB number and an ACL user of its own, for one session or worker.

    The user (``config``, ``url``) reaches keys and channels starting with
    ``prefix`` only, in any DB, like a service's own user: name keys with
    :meth:`key`.
    """

    db: int
    owner: str
    prefix: str
    config: RedisConfig = field(repr=False)

    @property
    def url(self) -> str:
        """``redis://`` URL of the DB, as the session's ACL user."""
        return self.config.url(self.db)

    def key(self, name: str) -> str:
        """``name`` under this session's prefix."""
        return f"{self.prefix}{name}"


@pytest.fixture(scope="session")
def infra_redis(infra_session: InfraSession) -> IsolatedRedis:
    """A Redis DB and an ACL user confined to a prefix; keys and user removed after."""
    from infra_lib.sessions import create_redis

    names = infra_session.names
    db, config = create_redis(infra_session.redis_admin, names)
    return IsolatedRedis(db, names.owner, names.redis_prefix, config)


#: Bucket the isolated prefixes live in.
TEST_BUCKET = "infra-tests"


@dataclass(frozen=True, slots=True)
class IsolatedBucketPrefix:
    """A key prefix of its own in a shared test bucket.

    ``config`` holds a MinIO user allowed under ``prefix`` only.
    """

    bucket: str
    prefix: str
    config: S3Config = field(repr=False)

    def key(self, name: str) -> str:
        """``name`` under this prefix."""
        return f"{self.prefix}{name}"


@pytest.fixture(scope="session")
def infra_bucket_prefix(infra_session: InfraSession) -> IsolatedBucketPrefix:
    """A unique prefix in the ``infra-tests`` bucket and a user for it; removed afterwards."""
    from infra_lib.sessions import create_bucket_prefix

    names = infra_session.names
    infra_session.used.add("storage")
    config = create_bucket_prefix(infra_session.storage_admin, names)
    return IsolatedBucketPrefix(TEST_BUCKET, names.object_prefix, config)


@dataclass(frozen=True, slots=True)
class IsolatedRoom:
    """A LiveKit room name of its own (the room is created for the session)."""

    name: str
    config: LiveKitConfig = field(repr=False)


@pytest.fixture(scope="session")
def infra_livekit_room(
    infra_settings: StackSettings, infra_worker_tag: str
) -> Iterator[IsolatedRoom]:
    """A LiveKit room created for the session and deleted afterwards."""
    from infra_lib.livekit.config import LiveKitConfig
    from infra_lib.livekit.rooms import RoomService

    config = LiveKitConfig.from_stack(infra_settings)
    name = f"pytest-{infra_worker_tag}"
    with RoomService(config) as rooms:
        rooms.create_room(name)
        try:
            yield IsolatedRoom(name, config)
        finally:
            rooms.delete_room(name)
