"""The tasks against a Redis that behaves like ElastiCache: TLS only, a restricted admin user.

As for PostgreSQL, everything runs through ``inv`` with an env file that
describes the server (``REDIS_HOST``, ``REDIS_TLS``, ``REDIS_TLS_CA_FILE``,
``REDIS_USERNAME``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from .managed import REDIS_ADMIN, ElastiCacheLikeRedis, ManagedTarget

MANIFEST = """\
[project]
name = "ledger"

[services.ledger-service]
redis = { db = 2, acl = true }

[services.cache-service]
redis = { db = "auto", acl = true }
"""

ONLY_REDIS = ["--skip", "postgres", "--skip", "storage", "--skip", "livekit", "--skip", "coturn"]


Target = ManagedTarget[ElastiCacheLikeRedis]


def _start(folder: Path, index: int, *, acl_management: bool) -> Target:
    return ManagedTarget.write(
        folder,
        f"elasticache-like-{os.getpid()}-{index}",
        ElastiCacheLikeRedis.start(acl_management=acl_management),
        MANIFEST,
    )


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    found = _start(tmp_path_factory.mktemp("elasticache-like"), 0, acl_management=True)
    try:
        code, _, err = found.inv("provision")
        assert code == 0, err
        yield found
    finally:
        found.remove()


@pytest.fixture
def locked_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A server whose admin may not run ACL SETUSER, as on ElastiCache itself."""
    found = _start(tmp_path_factory.mktemp("elasticache-locked"), 1, acl_management=False)
    try:
        yield found
    finally:
        found.remove()


def _service_client(values: dict[str, str]) -> redis.Redis:
    return redis.Redis.from_url(
        values["REDIS_URL"], ssl_ca_certs=values["REDIS_TLS_CA_FILE"], socket_timeout=5
    )


def test_the_server_is_like_elasticache(target: Target) -> None:
    with target.server.client() as admin:
        with pytest.raises(redis.exceptions.NoPermissionError):
            admin.config_get("databases")
        with pytest.raises(redis.exceptions.NoPermissionError):
            admin.execute_command("ACL", "SAVE")
    with pytest.raises(redis.ConnectionError):
        target.server.client(ssl=False).ping()
    # TLS checked against the test's CA, not any CA.
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        target.server.client(ssl_ca_certs=None).ping()


def test_provisioning_allocates_dbs_and_confined_users_and_is_idempotent(target: Target) -> None:
    code, out, err = target.inv("provision")
    assert code == 0, err
    assert "created 0, changed 0" in out
    ledger = target.service("ledger-service")
    assert ledger["REDIS_URL"].startswith("rediss://ledger-service:")
    assert ledger["REDIS_URL"].endswith(f":{target.server.port}/2")
    assert ledger["REDIS_TLS_CA_FILE"] == str(target.server.ca_file)
    cache = target.service("cache-service")
    assert cache["REDIS_DB"] not in {"2", "15"}
    with _service_client(ledger) as client:
        client.set("ledger-service:probe", "1", ex=10)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("cache-service:probe", "1")


def test_smoke_passes_on_the_managed_server(target: Target) -> None:
    junit = str(target.folder / "junit.xml")
    code, out, err = target.inv("smoke", *ONLY_REDIS, "--junit", junit)
    assert code == 0, out + err
    assert "smoke: 4 passed, 0 failed" in out


def test_backup_restore_and_drill_on_the_managed_server(target: Target) -> None:
    ledger = target.service("ledger-service")
    with _service_client(ledger) as client:
        for i in range(100):
            client.set(f"ledger-service:k{i}", i, ex=3600 if i % 2 else None)
    backups = str(target.folder / "backups")
    code, out, err = target.inv("backup", "--target", "redis", "--to", backups)
    assert code == 0, err

    where = ["--target", "redis", "--service", "ledger-service", "--dir", backups]
    code, out, err = target.inv("restore", *where)
    assert code == 3, err
    assert "not restoring over existing data" in err
    code, out, err = target.inv("restore", *where, "--into", "7")
    assert code == 0, err

    with _service_client(ledger) as client:
        client.delete(*[f"ledger-service:k{i}" for i in range(50)])
    code, out, err = target.inv("restore", *where, "--force")
    assert code == 0, err
    with _service_client(ledger) as client:
        assert client.get("ledger-service:k3") == b"3"
        assert 0 < client.ttl("ledger-service:k3") <= 3600
        assert client.ttl("ledger-service:k4") == -1
    code, out, err = target.inv("backup", "--target", "redis", "--verify-only", "--to", backups)
    assert code == 0, err
    assert "passed" in out


def test_rotate_on_the_managed_server(target: Target) -> None:
    old = target.service("cache-service")
    code, _, err = target.inv("rotate", "cache-service")
    assert code == 0, err
    new = target.service("cache-service")
    assert new["REDIS_PASSWORD"] != old["REDIS_PASSWORD"]
    with _service_client(old) as client, pytest.raises(redis.AuthenticationError):
        client.ping()
    with _service_client(new) as client:
        assert client.ping()


def test_a_server_that_keeps_acl_users_to_itself_refuses_before_any_change(
    locked_target: Target,
) -> None:
    locked = locked_target
    code, _, err = locked.inv("provision")
    assert code != 0
    assert f"does not let user '{REDIS_ADMIN}' manage ACL users" in err
    assert "Create user 'ledger-service' there with the access string 'on ~ledger-service:*" in err
    assert "Nothing was changed" in err
    with locked.server.client() as admin:
        assert {str(line).split()[1] for line in admin.acl_list()} == {"default", REDIS_ADMIN}
    for db in range(16):
        with locked.server.client(db=db) as admin:
            assert admin.dbsize() == 0, f"DB {db} was written to"
    assert not (locked.env_dir / "ledger-service.env").exists()
