"""`inv provision` checks every server before its first change, loses no credential
when a server drops out halfway, and lets concurrent runs take turns."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from infra_lib.errors import InfraError, ProvisionError
from infra_lib.livekit.config import LiveKitConfig
from infra_lib.manifest import load_manifest
from infra_lib.postgres.config import PostgresConfig
from infra_lib.postgres.provisioner import PostgresProvisioner
from infra_lib.provisioning import INCOMPLETE_MARK, ProvisionReport, provision, read_service_env
from infra_lib.redis.acl import delete_acl_user
from infra_lib.redis.allocator import DEFAULT_REGISTRY_KEY, RedisDbAllocator
from infra_lib.redis.config import RedisConfig
from infra_lib.stack.compose import Stack
from infra_lib.stack.settings import StackSettings
from infra_lib.storage.buckets import BucketManager
from infra_lib.storage.config import S3Config
from infra_lib.storage.credentials import delete_service_user

from .conftest import ROOT, run_inv

pytestmark = pytest.mark.integration


@dataclass
class Fresh:
    """Services, roles, databases and a bucket no other test uses; removed afterwards."""

    tmp_path: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    services: list[str] = field(default_factory=list)

    @property
    def bucket(self) -> str:
        return f"t{self.tag}-files"

    def name(self, label: str) -> str:
        return f"t{self.tag}-{label}"

    def service(self, label: str) -> str:
        self.services.append(self.name(label))
        return self.name(label)

    def role(self, label: str) -> str:
        return f"t{self.tag}_{label}_user"

    def database(self, label: str) -> str:
        return f"t{self.tag}_{label}_db"

    def manifest(self, body: str, *, bucket: str | None = None) -> Path:
        path = self.tmp_path / f"infra-{uuid.uuid4().hex[:6]}.toml"
        path.write_text(
            f'[project]\nname = "t{self.tag}"\nbucket = "{bucket or self.bucket}"\n\n{body}'
        )
        return path

    def full(self, label: str, *, redis_db: str = '"auto"') -> str:
        """A service table using PostgreSQL, Redis (own ACL user) and storage."""
        name = self.service(label)
        return (
            f"[services.{name}]\n"
            f'postgres = {{ database = "{self.database(label)}", role = "{self.role(label)}" }}\n'
            f"redis = {{ db = {redis_db}, acl = true }}\n"
            f'storage = {{ prefixes = ["{label}{self.tag}/"] }}\n\n'
        )


@pytest.fixture
def fresh(settings: StackSettings, env_dir: Path, tmp_path: Path) -> Iterator[Fresh]:
    made = Fresh(tmp_path)
    yield made
    pg = PostgresProvisioner(PostgresConfig.from_stack(settings))
    with pg.connect() as conn:
        dbs = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", [f"t{made.tag}%"]
        ).fetchall()
        roles = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", [f"t{made.tag}%"]
        ).fetchall()
    for (db,) in dbs:
        pg.drop_database(db, force=True)
    for (role,) in roles:
        pg.drop_role(role)
    rconfig = RedisConfig.from_stack(settings)
    s3 = S3Config.from_stack(settings)
    with RedisDbAllocator(rconfig) as allocator:
        for service in made.services:
            allocator.release(service)
            delete_acl_user(rconfig, service)
            delete_service_user(s3, service)
            (env_dir / f"{service}.env").unlink(missing_ok=True)
    BucketManager(s3).delete_bucket(made.bucket, force=True)


@pytest.fixture(scope="module")
def env_dir(settings: StackSettings) -> Path:
    return ROOT / "env" / settings.compose_project_name


def _servers(settings: StackSettings) -> dict[str, Any]:
    """Everything provisioning could change, on every server."""
    with psycopg.connect(
        **PostgresConfig.from_stack(settings).connect_kwargs(autocommit=True)
    ) as conn:
        catalog = conn.execute(
            "SELECT 'role', rolname, xmin::text FROM pg_authid "
            "UNION ALL SELECT 'database', datname, xmin::text FROM pg_database "
            "UNION ALL SELECT 'comment', description, xmin::text FROM pg_shdescription "
            "ORDER BY 1, 2"
        ).fetchall()
    rconfig = RedisConfig.from_stack(settings)
    with RedisDbAllocator(rconfig) as allocator:
        registry = allocator.list()
        client = rconfig.client(allocator.registry_db, decode_responses=True)
        with client:
            acl = sorted(client.acl_list())
            assert registry == {k: int(v) for k, v in client.hgetall(DEFAULT_REGISTRY_KEY).items()}
    s3 = S3Config.from_stack(settings)
    buckets = sorted(b.name for b in s3.client().list_buckets())
    users = sorted(json.loads(s3.admin_client().user_list()))
    return {"postgres": catalog, "redis": (registry, acl), "buckets": buckets, "users": users}


def _provision(
    settings: StackSettings, env_dir: Path, path: Path, **kwargs: Any
) -> ProvisionReport:
    backends: dict[str, Any] = {
        "postgres": PostgresConfig.from_stack(settings),
        "redis": RedisConfig.from_stack(settings),
        "storage": S3Config.from_stack(settings),
        "livekit": LiveKitConfig.from_stack(settings),
    }
    return provision(load_manifest(path), env_dir=env_dir, **{**backends, **kwargs})


def _credentials_work(env_dir: Path, service: str) -> None:
    """Every credential in the service's env file logs in where it should."""
    env = read_service_env(env_dir, service).values
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (env["PGUSER"],)
    with redis.Redis.from_url(env["REDIS_URL"]) as client:
        assert client.ping()
    config = S3Config(
        endpoint=env["S3_ENDPOINT"],
        access_key=env["S3_ACCESS_KEY_ID"],
        secret_key=env["S3_SECRET_ACCESS_KEY"],
    )
    key = env["S3_PREFIXES"].split(",")[0] + "probe"
    config.client().put_object(env["S3_BUCKET"], key, io.BytesIO(b"x"), 1)
    config.client().remove_object(env["S3_BUCKET"], key)


def _refused_without_change(
    settings: StackSettings, env_dir: Path, fresh: Fresh, path: Path, code: int, expected: str
) -> None:
    before = _servers(settings)
    for dry in ([], ["--dry-run"]):
        result = run_inv("provision", "--manifest", str(path), *dry)
        assert result.returncode == code, (dry, result.stdout, result.stderr)
        assert expected in result.stderr, (dry, result.stderr)
        assert _servers(settings) == before, dry
    for service in fresh.services:
        assert not (env_dir / f"{service}.env").exists()


def test_a_redis_db_out_of_range_changes_no_server(
    settings: StackSettings, env_dir: Path, fresh: Fresh
) -> None:
    path = fresh.manifest(fresh.full("a") + fresh.full("b", redis_db="99"))
    expected = f"service '{fresh.name('b')}', field 'redis.db': Redis DB 99 is out of range"
    _refused_without_change(settings, env_dir, fresh, path, 2, expected)


def test_another_services_role_changes_no_server(
    settings: StackSettings, env_dir: Path, fresh: Fresh
) -> None:
    owner = fresh.manifest(fresh.full("owner"))
    _provision(settings, env_dir, owner)
    # Service "thief" names the role of service "owner"; it comes after a valid service.
    thief = fresh.service("thief")
    body = fresh.full("a") + (
        f"[services.{thief}]\n"
        f'postgres = {{ database = "{fresh.database("thief")}", role = "{fresh.role("owner")}" }}\n'
    )
    path = fresh.manifest(body)
    before_env = read_service_env(env_dir, fresh.services[0]).values
    expected = f"service '{thief}', field 'postgres.role'"
    before = _servers(settings)
    for dry in ([], ["--dry-run"]):
        result = run_inv("provision", "--manifest", str(path), *dry)
        assert result.returncode == 1, result.stderr
        assert expected in result.stderr and "belongs to service" in result.stderr
        assert _servers(settings) == before
    assert read_service_env(env_dir, fresh.services[0]).values == before_env
    _credentials_work(env_dir, fresh.services[0])


def test_an_invalid_bucket_changes_no_server(
    settings: StackSettings, env_dir: Path, fresh: Fresh
) -> None:
    path = fresh.manifest(fresh.full("a"), bucket="Bad_Bucket")
    _refused_without_change(settings, env_dir, fresh, path, 2, "Bad_Bucket")


@pytest.fixture
def redis_restarted(stack: Stack) -> Iterator[Stack]:
    """The stack; its Redis is started again (and healthy) after the test."""
    from infra_lib.stack.probes import wait_for

    yield stack
    stack.docker.compose.start(["redis"])
    wait_for(stack.settings, ["redis"], timeout=60)
    deadline = time.monotonic() + 60
    while not stack.status(["redis"])[0].ok and time.monotonic() < deadline:
        time.sleep(0.5)


def test_redis_stopping_after_postgres_loses_nothing_and_a_rerun_finishes(
    settings: StackSettings, env_dir: Path, fresh: Fresh, redis_restarted: Stack
) -> None:
    from infra_lib.stack.probes import wait_for

    path = fresh.manifest(fresh.full("a") + fresh.full("b"))

    def stop_redis(backend: str) -> None:
        if backend == "postgres":
            redis_restarted.docker.compose.stop(["redis"])

    with pytest.raises(ProvisionError) as info:
        _provision(settings, env_dir, path, on_applied=stop_redis)
    message = str(info.value)
    assert "stopped while applying the redis changes" in message
    assert f"postgres role {fresh.role('a')} created" in message
    assert "run `inv provision`" in message and "again" in message

    for service in fresh.services:
        env_file = env_dir / f"{service}.env"
        assert env_file.stat().st_mode & 0o777 == 0o600
        assert env_file.read_text().startswith(INCOMPLETE_MARK)
        env = read_service_env(env_dir, service).values
        # What was created works with what the env file holds.
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (env["PGDATABASE"],)

    redis_restarted.docker.compose.start(["redis"])
    wait_for(settings, ["redis"], timeout=60)
    _provision(settings, env_dir, path)
    for service in fresh.services:
        assert INCOMPLETE_MARK not in (env_dir / f"{service}.env").read_text()
        _credentials_work(env_dir, service)
    again = _provision(settings, env_dir, path)
    assert not again.changed, [r for r in again.rows if r.change != "unchanged"]


def test_concurrent_runs_take_turns_and_agree_with_the_servers(env_dir: Path, fresh: Fresh) -> None:
    path = fresh.manifest(fresh.full("a") + fresh.full("b") + fresh.full("c"))
    command = [sys.executable, "-m", "invoke", "provision", "--manifest", str(path)]
    runs = [
        subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr
    for service in fresh.services:
        _credentials_work(env_dir, service)
    again = run_inv("provision", "--manifest", str(path))
    assert again.returncode == 0, again.stderr
    assert "created 0, changed 0" in again.stdout


def test_storage_credentials_without_admin_rights_change_no_server(
    settings: StackSettings, env_dir: Path, fresh: Fresh
) -> None:
    owner = fresh.manifest(fresh.full("owner"))
    _provision(settings, env_dir, owner)
    env = read_service_env(env_dir, fresh.services[0]).values
    # A service's own keys in place of the MinIO admin: the server refuses the checks.
    weak = replace(
        S3Config.from_stack(settings),
        access_key=env["S3_ACCESS_KEY_ID"],
        secret_key=env["S3_SECRET_ACCESS_KEY"],
    )
    path = fresh.manifest(fresh.full("a"))
    before = _servers(settings)
    for dry_run in (False, True):
        with pytest.raises(InfraError) as info:
            _provision(settings, env_dir, path, storage=weak, dry_run=dry_run)
        assert "stopped while applying" not in str(info.value)
        assert _servers(settings) == before
    assert not (env_dir / f"{fresh.name('a')}.env").exists()
