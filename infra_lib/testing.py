"""pytest plugin: isolated resources on the already-running stack.

Loaded automatically when infra-lib is installed (``pytest11`` entry point).
Each test session, and each pytest-xdist worker, gets its own PostgreSQL
database and role, Redis DB number, bucket prefix and LiveKit room name on
the shared stack, all removed at the end. Nothing starts containers per test
run: the stack is the one ``inv up`` started.

Where the stack is: ``--infra-env-file PATH`` or ``INFRA_ENV_FILE`` (the
stack checkout's ``.env``), default ``./.env``. A stack that does not answer
fails the fixture that needs it (no skip).
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from infra_lib.livekit.config import LiveKitConfig
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.redis.config import RedisConfig
    from infra_lib.stack.settings import StackSettings
    from infra_lib.storage.config import S3Config

__all__ = [
    "IsolatedBucketPrefix",
    "IsolatedDatabase",
    "IsolatedRedis",
    "IsolatedRoom",
    "infra_bucket_prefix",
    "infra_database",
    "infra_livekit_room",
    "infra_redis",
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
    """A short tag unique to this session and xdist worker (e.g. ``gw1x3f9a2``)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"{worker}x{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def infra_settings(request: pytest.FixtureRequest) -> StackSettings:
    """The stack's settings, read from its env file and the environment."""
    from infra_lib.stack.settings import load_stack_settings

    option = request.config.getoption("--infra-env-file")
    path = Path(option or os.environ.get("INFRA_ENV_FILE") or ".env").resolve()
    return load_stack_settings(path, environ=os.environ)


@dataclass(frozen=True, slots=True)
class IsolatedDatabase:
    """A database owned by a role of its own, for one session or worker."""

    name: str
    role: str
    config: PostgresConfig = field(repr=False)

    @property
    def url(self) -> str:
        """``postgresql://`` URL with the role's credentials."""
        return self.config.url()


@pytest.fixture(scope="session")
def infra_database(
    infra_settings: StackSettings, infra_worker_tag: str
) -> Iterator[IsolatedDatabase]:
    """A fresh PostgreSQL database and login role; dropped after the session."""
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.postgres.provisioner import DatabaseSpec, PostgresProvisioner, RoleSpec

    admin = PostgresConfig.from_stack(infra_settings)
    provisioner = PostgresProvisioner(admin)
    name = f"pytest_{infra_worker_tag}"
    role = RoleSpec(f"{name}_user", secrets.token_urlsafe(24), service=f"pytest-{infra_worker_tag}")
    provisioner.ensure([role], [DatabaseSpec(name, role.name, service=role.service)])
    try:
        yield IsolatedDatabase(name, role.name, admin.with_login(role.name, role.password, name))
    finally:
        provisioner.drop_database(name, force=True)
        provisioner.drop_role(role.name)


@dataclass(frozen=True, slots=True)
class IsolatedRedis:
    """A Redis DB number allocated to one session or worker."""

    db: int
    owner: str
    config: RedisConfig = field(repr=False)

    @property
    def url(self) -> str:
        """``redis://`` URL of the DB."""
        return self.config.url(self.db)


@pytest.fixture(scope="session")
def infra_redis(infra_settings: StackSettings, infra_worker_tag: str) -> Iterator[IsolatedRedis]:
    """A Redis DB of its own (allocated atomically); flushed and released after."""
    from infra_lib.redis.allocator import RedisDbAllocator
    from infra_lib.redis.config import RedisConfig

    config = RedisConfig.from_stack(infra_settings)
    owner = f"pytest-{infra_worker_tag}"
    with RedisDbAllocator(config) as allocator:
        allocation = allocator.allocate(owner)
        try:
            client = config.client(allocation.db)
            with client:
                client.flushdb()
            yield IsolatedRedis(allocation.db, owner, config)
        finally:
            client = config.client(allocation.db)
            with client:
                client.flushdb()
            allocator.release(owner)


#: Bucket the isolated prefixes live in when the stack has no manifest bucket.
TEST_BUCKET = "infra-tests"


@dataclass(frozen=True, slots=True)
class IsolatedBucketPrefix:
    """A key prefix of its own in a shared test bucket."""

    bucket: str
    prefix: str
    config: S3Config = field(repr=False)

    def key(self, name: str) -> str:
        """``name`` under this prefix."""
        return f"{self.prefix}{name}"


@pytest.fixture(scope="session")
def infra_bucket_prefix(
    infra_settings: StackSettings, infra_worker_tag: str
) -> Iterator[IsolatedBucketPrefix]:
    """A unique prefix in the ``infra-tests`` bucket; its objects are deleted afterwards."""
    from minio.deleteobjects import DeleteObject

    from infra_lib.storage.buckets import BucketManager
    from infra_lib.storage.config import S3Config

    config = S3Config.from_stack(infra_settings)
    BucketManager(config).ensure_bucket(TEST_BUCKET)
    isolated = IsolatedBucketPrefix(TEST_BUCKET, f"pytest/{infra_worker_tag}/", config)
    try:
        yield isolated
    finally:
        client = config.client()
        doomed = (
            DeleteObject(obj.object_name)
            for obj in client.list_objects(TEST_BUCKET, prefix=isolated.prefix, recursive=True)
            if obj.object_name is not None
        )
        errors = list(client.remove_objects(TEST_BUCKET, doomed))
        if errors:
            raise RuntimeError(f"could not delete test objects: {errors[:3]}")


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
