"""ServiceSettings: file plus environment, clear errors for what is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infra_lib.errors import ConfigError
from infra_lib.service import ServiceSettings


def test_file_then_environment(tmp_path: Path) -> None:
    env = tmp_path / "svc.env"
    env.write_text("SERVICE_NAME=svc\nDATABASE_URL=postgresql://a@h/db\nS3_PREFIXES=a/,b/\n")
    settings = ServiceSettings.load(env, environ={"DATABASE_URL": "postgresql://b@h/db"})
    assert settings.name == "svc"
    assert settings.require("DATABASE_URL") == "postgresql://b@h/db"
    assert settings.prefixes == ("a/", "b/")
    assert "postgresql" not in repr(settings)


def test_missing_backend_names_the_variable(tmp_path: Path) -> None:
    settings = ServiceSettings.load(environ={"SERVICE_NAME": "auth-service"})
    with pytest.raises(ConfigError, match="DATABASE_URL is not set for auth-service"):
        settings.postgres()


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="inv provision"):
        ServiceSettings.load(tmp_path / "absent.env", environ={})


def test_importing_the_library_pulls_in_no_sdk() -> None:
    code = (
        "import sys, infra_lib, infra_lib.service, infra_lib.storage, infra_lib.livekit;"
        "heavy = [m for m in ('boto3', 'minio', 'livekit.api', 'python_on_whales', 'psycopg',"
        " 'redis') if m in sys.modules]; print(heavy); sys.exit(bool(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_secrets_may_come_as_files_or_a_folder_of_files(tmp_path: Path) -> None:
    url = tmp_path / "database-url"
    url.write_text("postgresql://a:pw@h/db\n")
    settings = ServiceSettings.load(environ={"DATABASE_URL_FILE": str(url)})
    assert settings.require("DATABASE_URL") == "postgresql://a:pw@h/db"
    assert "DATABASE_URL_FILE" not in settings.values

    folder = tmp_path / "svc.secrets"
    folder.mkdir()
    (folder / "S3_SECRET_ACCESS_KEY").write_text("s3-secret\n")
    (folder / "REDIS_URL").write_text("redis://u:p@h:6379/2\n")
    env = tmp_path / "svc.env"
    env.write_text("SERVICE_NAME=svc\nREDIS_URL=redis://direct@h:6379/2\n")
    settings = ServiceSettings.load(env, environ={}, secrets_dir=folder)
    assert settings.require("S3_SECRET_ACCESS_KEY") == "s3-secret"
    # A value given directly wins over the folder.
    assert settings.require("REDIS_URL") == "redis://direct@h:6379/2"


def test_a_missing_secret_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL_FILE"):
        ServiceSettings.load(environ={"REDIS_URL_FILE": str(tmp_path / "nope")})


def test_ca_file_settings_are_values_not_file_variants(tmp_path: Path) -> None:
    env = tmp_path / "svc.env"
    env.write_text(
        "SERVICE_NAME=svc\nGATEWAY_CA_FILE=/ca/gateway.pem\nREDIS_TLS_CA_FILE=/ca/redis.pem\n"
        "DATABASE_URL_FILE=/nowhere-needed\nDATABASE_URL=postgresql://a@h/db\n"
    )
    settings = ServiceSettings.load(env, environ={})
    assert settings.require("GATEWAY_CA_FILE") == "/ca/gateway.pem"
    assert settings.require("REDIS_TLS_CA_FILE") == "/ca/redis.pem"
    assert "DATABASE_URL_FILE" not in settings.values
