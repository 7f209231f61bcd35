"""`inv rotate SERVICE`: new credentials on every server, and the old ones refused."""

from __future__ import annotations

import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from minio import Minio
from minio.error import S3Error

from infra_lib.provisioning import ROTATED_KEYS, env_path, read_service_env, secret_files_dir
from infra_lib.stack.compose import Stack

from .conftest import run_inv

SERVICE = "board-service"


def _env_dir(stack: Stack) -> Path:
    return Path(__file__).resolve().parents[2] / "env" / stack.project_name


def _postgres_logs_in(values: dict[str, str]) -> bool:
    try:
        with psycopg.connect(values["DATABASE_URL"], connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        assert "password authentication failed" in str(exc), exc
        return False
    return True


def _redis_logs_in(values: dict[str, str]) -> bool:
    client = redis.Redis.from_url(values["REDIS_URL"], socket_timeout=5)
    try:
        # The write proves the login; the key goes at once, so no other test
        # sees a key of this service vanish when its TTL runs out.
        key = values["REDIS_KEY_PREFIX"] + "rotate-probe"
        client.set(key, "1", ex=10)
        client.delete(key)
    except redis.AuthenticationError:
        return False
    finally:
        client.close()
    return True


def _storage_logs_in(values: dict[str, str]) -> bool:
    endpoint = urlsplit(values["S3_ENDPOINT"])
    client = Minio(
        endpoint.netloc,
        access_key=values["S3_ACCESS_KEY_ID"],
        secret_key=values["S3_SECRET_ACCESS_KEY"],
        secure=endpoint.scheme == "https",
        region=values["S3_REGION"],
    )
    prefix = values["S3_PREFIXES"].split(",")[0]
    try:
        list(client.list_objects(values["S3_BUCKET"], prefix=prefix))
    except S3Error as exc:
        assert exc.code in {"SignatureDoesNotMatch", "InvalidAccessKeyId"}, exc
        return False
    return True


@pytest.fixture
def with_secret_files(stack: Stack) -> Iterator[Path]:
    """The service's secret-files folder, as `inv provision --secret-files` makes it."""
    result = run_inv("provision", "--service", SERVICE, "--secret-files")
    assert result.returncode == 0, result.stderr
    folder = secret_files_dir(_env_dir(stack), SERVICE)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_rotate_replaces_the_credentials_and_the_old_ones_stop_working(
    stack: Stack, with_secret_files: Path
) -> None:
    env_dir = _env_dir(stack)
    old = read_service_env(env_dir, SERVICE).values
    others = {
        path.name: path.read_text(encoding="utf-8")
        for path in env_dir.glob("*.env")
        if path.name != f"{SERVICE}.env"
    }
    assert _postgres_logs_in(old) and _redis_logs_in(old) and _storage_logs_in(old)

    result = run_inv("rotate", SERVICE)
    assert result.returncode == 0, result.stderr
    assert f"{SERVICE} must reload" in result.stdout

    new = read_service_env(env_dir, SERVICE).values
    for key in ROTATED_KEYS:
        assert new[key] != old[key], f"{key} was not rotated"
        assert new[key] not in result.stdout + result.stderr, f"the new {key} was printed"
    unchanged = {k for k in old if k not in ROTATED_KEYS and old[k] == new[k]}
    derived = {"DATABASE_URL", "JDBC_DATABASE_PASSWORD", "REDIS_URL"}
    assert unchanged == set(old) - ROTATED_KEYS - derived, "only the credentials changed"
    assert stat.S_IMODE(env_path(env_dir, SERVICE).stat().st_mode) == 0o600

    assert not _postgres_logs_in(old), "the old PostgreSQL password still logs in"
    assert not _redis_logs_in(old), "the old Redis password still logs in"
    assert not _storage_logs_in(old), "the old storage secret still signs requests"
    assert _postgres_logs_in(new) and _redis_logs_in(new) and _storage_logs_in(new)

    # The secret files moved with the env file; no other service was touched.
    for key in ROTATED_KEYS:
        assert (with_secret_files / key).read_text(encoding="utf-8") == new[key] + "\n"
    for name, text in others.items():
        assert (env_dir / name).read_text(encoding="utf-8") == text, f"{name} changed"

    # Provisioning afterwards keeps the new credentials.
    again = run_inv("provision")
    assert again.returncode == 0, again.stderr
    assert read_service_env(env_dir, SERVICE).values == new


def test_rotate_dry_run_changes_nothing(stack: Stack) -> None:
    env_dir = _env_dir(stack)
    before = env_path(env_dir, SERVICE).read_text(encoding="utf-8")
    result = run_inv("rotate", SERVICE, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "planned" in result.stdout
    assert env_path(env_dir, SERVICE).read_text(encoding="utf-8") == before
    assert _postgres_logs_in(read_service_env(env_dir, SERVICE).values)


def test_rotate_an_unknown_service_says_which_exist(stack: Stack) -> None:
    result = run_inv("rotate", "no-such-service")
    assert result.returncode != 0
    assert "no service 'no-such-service'" in result.stderr
    assert "board-service" in result.stderr
