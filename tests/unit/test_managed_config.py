"""Settings for servers outside the stack, and where PostgreSQL's tools run."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from infra_lib.backup.postgres import ImagePgTools, LocalPgTools, choose_managed_tools
from infra_lib.errors import ConfigError
from infra_lib.postgres.config import PostgresConfig
from infra_lib.redis.config import RedisConfig
from infra_lib.stack.settings import StackSettings, load_stack_settings
from infra_lib.storage.config import S3Config


def _settings(tmp_path: Path, text: str) -> StackSettings:
    env_file = tmp_path / ".env"
    env_file.write_text("POSTGRES_PASSWORD=admin-pw\nREDIS_PASSWORD=redis-pw\n" + text)
    return load_stack_settings(env_file, environ={})


def test_postgres_host_makes_the_server_managed(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    settings = _settings(
        tmp_path,
        f"POSTGRES_HOST=db.example.com\nPOSTGRES_SSLMODE=verify-full\nPOSTGRES_SSLROOTCERT={ca}\n",
    )
    assert settings.postgres_managed
    config = PostgresConfig.from_stack(settings)
    assert (config.host, config.sslmode, config.sslrootcert) == (
        "db.example.com",
        "verify-full",
        str(ca),
    )
    stack = tmp_path / "stack"
    stack.mkdir()
    assert not _settings(stack, "").postgres_managed
    assert PostgresConfig.from_stack(_settings(stack, "")).host == "127.0.0.1"


def test_a_relative_ca_bundle_or_an_unknown_sslmode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="POSTGRES_SSLROOTCERT"):
        _settings(tmp_path, "POSTGRES_SSLROOTCERT=ca.pem\n")
    with pytest.raises(ConfigError, match="POSTGRES_SSLMODE"):
        _settings(tmp_path, "POSTGRES_SSLMODE=sometimes\n")


def test_image_tools_mount_a_private_password_file_and_never_pass_the_password(
    tmp_path: Path,
) -> None:
    config = PostgresConfig(
        "db.example.com", 5433, "admin", "p:a\\ss", "postgres", "verify-full", "/etc/ca.pem"
    )
    tools = ImagePgTools(config, "postgres:17", tmp_path / "secrets")
    command = tools.command("pg_dump", ["--format=custom"], what="dump", database="ledger")
    assert "p:a\\ss" not in " ".join(command.argv) + repr(command.env)
    assert command.argv[-4:] == ("--entrypoint", "pg_dump", "postgres:17", "--format=custom")
    passfile = tmp_path / "secrets" / "pg-tools.pgpass"
    assert passfile.read_text() == "db.example.com:5433:*:admin:p\\:a\\\\ss\n"
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    assert stat.S_IMODE(passfile.parent.stat().st_mode) == 0o700
    assert "PGDATABASE=ledger" in command.argv
    assert "PGSSLROOTCERT=/run/infra-pg/ca.pem" in command.argv
    assert "/etc/ca.pem:/run/infra-pg/ca.pem:ro" in command.argv


def test_tools_follow_postgres_tools(tmp_path: Path) -> None:
    config = PostgresConfig("db.example.com")
    image = _settings(tmp_path, "POSTGRES_TOOLS=image\nPOSTGRES_TOOLS_IMAGE=postgres:18\n")
    chosen = choose_managed_tools(config, image, 18)
    assert isinstance(chosen, ImagePgTools) and chosen.image == "postgres:18"
    local = _settings(tmp_path, "POSTGRES_TOOLS=local\n")
    assert isinstance(choose_managed_tools(config, local, 18), LocalPgTools)


def test_redis_host_tls_and_admin_user(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    settings = _settings(
        tmp_path,
        f"REDIS_HOST=cache.example.com\nREDIS_TLS=true\nREDIS_TLS_CA_FILE={ca}\n"
        "REDIS_USERNAME=infra-admin\nREDIS_PORT=6380\n",
    )
    config = RedisConfig.from_stack(settings)
    assert (config.host, config.port, config.tls, config.tls_ca_file, config.username) == (
        "cache.example.com",
        6380,
        True,
        str(ca),
        "infra-admin",
    )
    assert config.url(3).startswith("rediss://infra-admin:")
    with pytest.raises(ConfigError, match="REDIS_TLS_CA_FILE"):
        _settings(tmp_path, "REDIS_TLS=true\nREDIS_TLS_CA_FILE=relative.pem\n")


def test_s3_endpoint_region_addressing_and_a_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "s3-admin"
    key_file.write_text("s3-secret-value\n")
    settings = _settings(
        tmp_path,
        "S3_ENDPOINT=https://s3.eu-west-1.amazonaws.com\nS3_REGION=eu-west-1\n"
        f"S3_ACCESS_KEY_ID=AKIAEXAMPLE\nS3_SECRET_ACCESS_KEY_FILE={key_file}\n",
    )
    assert settings.storage_managed
    config = S3Config.from_stack(settings)
    assert (config.endpoint, config.region, config.addressing, config.minio_admin) == (
        "https://s3.eu-west-1.amazonaws.com",
        "eu-west-1",
        "virtual",
        False,
    )
    assert (config.access_key, config.secret_key) == ("AKIAEXAMPLE", "s3-secret-value")
    with pytest.raises(ConfigError, match="S3_SECRET_ACCESS_KEY and S3_SECRET_ACCESS_KEY_FILE"):
        _settings(
            tmp_path,
            f"S3_SECRET_ACCESS_KEY=inline\nS3_SECRET_ACCESS_KEY_FILE={key_file}\n",
        )
