"""`inv provision` with the reference manifest: each service gets its own access."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import psycopg
import pytest
import redis

from infra_lib.gateway.layer import GatewayEnv, GatewayPaths, PublicUrls, is_enabled
from infra_lib.livekit.config import LiveKitConfig
from infra_lib.manifest import load_manifest
from infra_lib.postgres.config import PostgresConfig
from infra_lib.provisioning import ProvisionReport, provision, read_service_env
from infra_lib.redis.config import RedisConfig
from infra_lib.stack.compose import Stack
from infra_lib.stack.settings import StackSettings
from infra_lib.storage.config import S3Config

from .conftest import ROOT, run_inv

pytestmark = pytest.mark.integration

MANIFEST = load_manifest(ROOT / "infra.toml")
STORAGE_SERVICES = [s.name for s in MANIFEST if s.storage is not None]
PG_SERVICES = [s.name for s in MANIFEST if s.postgres is not None]
REDIS_SERVICES = [s.name for s in MANIFEST if s.redis is not None]


def _gateway(settings: StackSettings) -> GatewayEnv | None:
    """The gateway's env values as `inv provision` adds them, while the gateway is on."""
    if not is_enabled(settings):
        return None
    paths = GatewayPaths(ROOT / "env" / settings.compose_project_name)
    return GatewayEnv(PublicUrls.from_settings(settings), paths.ca_cert)


def _provision(settings: StackSettings, **kwargs: object) -> ProvisionReport:
    kwargs.setdefault("gateway", _gateway(settings))
    return provision(
        MANIFEST,
        env_dir=ROOT / "env" / settings.compose_project_name,
        postgres=PostgresConfig.from_stack(settings),
        redis=RedisConfig.from_stack(settings),
        storage=S3Config.from_stack(settings),
        livekit=LiveKitConfig.from_stack(settings),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def env_dir(settings: StackSettings) -> Path:
    return ROOT / "env" / settings.compose_project_name


@pytest.fixture(scope="module")
def provisioned(settings: StackSettings) -> ProvisionReport:
    return _provision(settings)


def test_second_run_changes_nothing(settings: StackSettings, provisioned: ProvisionReport) -> None:
    again = _provision(settings)
    assert not again.changed, [r for r in again.rows if r.change != "unchanged"]
    assert len(again.rows) == len(provisioned.rows)


def test_dry_run_of_a_provisioned_manifest_plans_nothing(
    settings: StackSettings, provisioned: ProvisionReport
) -> None:
    assert not _provision(settings, dry_run=True).changed


def test_env_files_are_private(env_dir: Path, provisioned: ProvisionReport) -> None:
    for env in provisioned.env_files:
        assert env.path.stat().st_mode & 0o777 == 0o600
    assert env_dir.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("service", PG_SERVICES)
def test_each_service_reaches_its_database_and_no_other(
    env_dir: Path, provisioned: ProvisionReport, service: str
) -> None:
    env = read_service_env(env_dir, service).values
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS provision_probe (id int)")
        conn.execute("DROP TABLE provision_probe")
        assert conn.execute("SELECT current_database()").fetchone() == (env["PGDATABASE"],)
    for other in PG_SERVICES:
        if other == service:
            continue
        other_db = read_service_env(env_dir, other).values["PGDATABASE"]
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(
                host=env["PGHOST"],
                port=env["PGPORT"],
                user=env["PGUSER"],
                password=env["PGPASSWORD"],
                dbname=other_db,
            )


@pytest.mark.parametrize("service", REDIS_SERVICES)
def test_each_service_uses_its_own_redis_db_and_user(
    env_dir: Path, provisioned: ProvisionReport, service: str
) -> None:
    env = read_service_env(env_dir, service).values
    expected_db = MANIFEST.service(service).redis
    assert expected_db is not None and int(env["REDIS_DB"]) == expected_db.db
    assert env["REDIS_USERNAME"] == service
    client = redis.Redis.from_url(env["REDIS_URL"], decode_responses=True)
    with client:
        key = f"{env['REDIS_KEY_PREFIX']}provision-probe:{os.getpid()}"
        client.set(key, "v", ex=30)
        assert client.get(key) == "v"
        client.delete(key)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.flushall()
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set(f"provision-probe:{os.getpid()}", "outside the prefix")


def test_inv_env_masks_secrets_unless_asked(env_dir: Path, provisioned: ProvisionReport) -> None:
    secret = read_service_env(env_dir, "board-service").values["PGPASSWORD"]
    masked = run_inv("env", "board-service")
    assert masked.returncode == 0, masked.stderr
    assert secret not in masked.stdout
    assert "PGPASSWORD=********" in masked.stdout
    shown = run_inv("env", "board-service", "--show-secrets")
    assert f"PGPASSWORD={secret}" in shown.stdout


def test_inv_env_for_an_unknown_service_is_a_clear_error() -> None:
    result = run_inv("env", "nope-service")
    assert result.returncode == 2
    # Not in the manifest: provisioning would not create it, so say what is there.
    assert "no service 'nope-service' in" in result.stderr
    assert "known: user-service" in result.stderr


def test_inv_provision_reports_unchanged(provisioned: ProvisionReport) -> None:
    result = run_inv("provision")
    assert result.returncode == 0, result.stderr
    assert "created 0, changed 0" in result.stdout


def test_invalid_manifest_is_refused_before_any_change(tmp_path: Path) -> None:
    bad = tmp_path / "infra.toml"
    bad.write_text('[services.x]\npostgres = { database = "x; DROP", role = "x" }\n')
    result = run_inv("provision", "--manifest", str(bad))
    assert result.returncode == 2
    assert "service 'x', field 'postgres.database'" in result.stderr


@pytest.mark.parametrize("service", STORAGE_SERVICES)
def test_each_service_writes_only_under_its_own_prefix(
    env_dir: Path, provisioned: ProvisionReport, service: str
) -> None:
    from minio.error import S3Error

    env = read_service_env(env_dir, service).values
    config = S3Config(
        endpoint=env["S3_ENDPOINT"],
        access_key=env["S3_ACCESS_KEY_ID"],
        secret_key=env["S3_SECRET_ACCESS_KEY"],
    )
    client = config.client()
    bucket, own = env["S3_BUCKET"], env["S3_PREFIXES"].split(",")[0]
    key = f"{own}provision-probe-{os.getpid()}"
    client.put_object(bucket, key, io.BytesIO(b"x"), 1)
    client.remove_object(bucket, key)
    for other in STORAGE_SERVICES:
        if other == service:
            continue
        theirs = read_service_env(env_dir, other).values["S3_PREFIXES"].split(",")[0]
        with pytest.raises(S3Error, match=r"AccessDenied|Access Denied"):
            client.put_object(bucket, f"{theirs}intruder", io.BytesIO(b"x"), 1)


def test_acl_users_survive_a_redis_restart(
    stack: Stack, env_dir: Path, provisioned: ProvisionReport
) -> None:
    from infra_lib.stack.probes import wait_for

    stack.docker.compose.restart(["redis"])
    wait_for(stack.settings, ["redis"], timeout=60)
    # Leave the stack as found: healthy in Docker's eyes too, for the tests after this one.
    deadline = time.monotonic() + 60
    while not stack.status(["redis"])[0].ok and time.monotonic() < deadline:
        time.sleep(0.5)
    env = read_service_env(env_dir, "board-service").values
    with redis.Redis.from_url(env["REDIS_URL"]) as client:
        assert client.ping()


@pytest.mark.parametrize("skipped", ["postgres", "redis", "storage", "livekit"])
def test_a_backend_left_out_keeps_its_keys_and_the_next_full_run_changes_nothing(
    settings: StackSettings, env_dir: Path, provisioned: ProvisionReport, skipped: str
) -> None:
    # `inv up --service redis` provisions Redis alone; the other backends'
    # credentials must survive it, or the next full run would rotate them.
    before = {s.name: read_service_env(env_dir, s.name).values for s in MANIFEST}
    configs: dict[str, object] = {
        "postgres": PostgresConfig.from_stack(settings),
        "redis": RedisConfig.from_stack(settings),
        "storage": S3Config.from_stack(settings),
        "livekit": LiveKitConfig.from_stack(settings),
    }
    configs[skipped] = None
    provision(MANIFEST, env_dir=env_dir, gateway=_gateway(settings), **configs)  # type: ignore[arg-type]
    after = {s.name: read_service_env(env_dir, s.name).values for s in MANIFEST}
    assert after == before
    again = _provision(settings)
    assert not again.changed, [r for r in again.rows if r.change != "unchanged"]


def test_env_folders_it_creates_are_private(settings: StackSettings, tmp_path: Path) -> None:
    env_dir = tmp_path / "env" / "project"
    provision(MANIFEST, env_dir=env_dir, postgres=None, redis=None, services=["auth-service"])
    assert (env_dir / "auth-service.env").stat().st_mode & 0o777 == 0o600
    for folder in (env_dir, env_dir.parent):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
