"""Typed stack settings: precedence, validation, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra_lib.errors import ConfigError
from infra_lib.stack.settings import load_stack_settings


def _env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text)
    return path


def test_missing_env_file_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="inv init"):
        load_stack_settings(tmp_path / ".env")


def test_file_values_and_defaults(tmp_path: Path) -> None:
    settings = load_stack_settings(_env(tmp_path, "POSTGRES_PORT=6000\nREDIS_PASSWORD=r\n"))
    assert settings.postgres_port == 6000
    assert settings.redis_port == 6379
    assert settings.secret("redis_password") == "r"


def test_environment_wins_over_file_like_compose(tmp_path: Path) -> None:
    path = _env(tmp_path, "POSTGRES_PORT=6000\n")
    settings = load_stack_settings(path, environ={"POSTGRES_PORT": "6001", "UNRELATED": "x"})
    assert settings.postgres_port == 6001


def test_process_environment_is_not_read_implicitly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTGRES_PORT", "7000")
    settings = load_stack_settings(_env(tmp_path, ""), environ={})
    assert settings.postgres_port == 5432


@pytest.mark.parametrize(
    ("line", "field"),
    [("POSTGRES_PORT=70000", "POSTGRES_PORT"), ("COMPOSE_PROJECT_NAME=Bad Name", "PROJECT")],
)
def test_invalid_values_name_the_variable(tmp_path: Path, line: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_stack_settings(_env(tmp_path, line + "\n"))


def test_unset_secret_says_what_to_do(tmp_path: Path) -> None:
    settings = load_stack_settings(_env(tmp_path, ""))
    with pytest.raises(ConfigError, match=r"POSTGRES_PASSWORD.*inv init"):
        settings.secret("postgres_password")


def test_secrets_do_not_show_in_repr(tmp_path: Path) -> None:
    settings = load_stack_settings(_env(tmp_path, "POSTGRES_PASSWORD=hunter2-very-secret\n"))
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)


def test_secrets_come_from_the_default_secrets_folder(tmp_path: Path) -> None:
    folder = tmp_path / "env" / "proj" / "secrets"
    folder.mkdir(parents=True)
    (folder / "postgres-password").write_text("from-the-file\n")
    settings = load_stack_settings(_env(tmp_path, "COMPOSE_PROJECT_NAME=proj\n"), environ={})
    assert settings.secrets_dir == folder
    assert settings.secret("postgres_password") == "from-the-file"
    assert "from-the-file" not in repr(settings)


def test_a_secret_file_variable_is_read_and_excludes_the_value(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("filed\n")
    env = _env(tmp_path, f"REDIS_PASSWORD_FILE={secret}\n")
    assert load_stack_settings(env, environ={}).secret("redis_password") == "filed"
    with pytest.raises(ConfigError, match="exclusive"):
        load_stack_settings(env, environ={"REDIS_PASSWORD": "x"})
    missing = _env(tmp_path, f"REDIS_PASSWORD_FILE={tmp_path / 'nope'}\n")
    with pytest.raises(ConfigError, match=r"REDIS_PASSWORD_FILE.*does not exist"):
        load_stack_settings(missing, environ={})


def test_env_value_that_disagrees_with_the_secret_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "env" / "infra" / "secrets"
    folder.mkdir(parents=True)
    (folder / "postgres-password").write_text("in-file\n")
    env = _env(tmp_path, "POSTGRES_PASSWORD=in-env\n")
    with pytest.raises(ConfigError, match="differs from the secret file"):
        load_stack_settings(env, environ={})
    # The process environment is an explicit choice (a server elsewhere) and wins.
    settings = load_stack_settings(env, environ={"POSTGRES_PASSWORD": "chosen"})
    assert settings.secret("postgres_password") == "chosen"


def test_a_relative_secrets_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="absolute"):
        load_stack_settings(_env(tmp_path, "INFRA_SECRETS_DIR=secrets\n"), environ={})
