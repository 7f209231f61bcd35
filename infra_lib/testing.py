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
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.redis.config import RedisConfig
    from infra_lib.stack.settings import StackSettings

__all__ = [
    "IsolatedDatabase",
    "IsolatedRedis",
    "infra_database",
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
