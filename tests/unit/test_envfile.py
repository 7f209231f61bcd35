"""`.env` generation, the secret files, migration from secrets in `.env`."""

from __future__ import annotations

import base64
import re
import stat
from pathlib import Path

import pytest

from infra_lib.errors import ConfigError, EnvFileExists
from infra_lib.stack.envfile import (
    GENERATED_KEYS,
    SECRET_KEYS,
    InitResult,
    mask,
    parse_env_lines,
    tighten_private,
    write_env_file,
)
from infra_lib.stack.secrets import (
    LIVEKIT_KEYS_FILE,
    SECRET_FILES,
    migrate_env_secrets,
    missing_secret_files,
    read_stack_secrets,
    sync_secret_files,
    write_stack_secrets,
)
from infra_lib.turn import turn_credentials

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / ".env.example"


def _everything(result: InitResult) -> dict[str, str]:
    """The env file's values and the secret files', as one mapping."""
    assert result.secrets_dir is not None
    return {**parse_env_lines(result.path.read_text()), **read_stack_secrets(result.secrets_dir)}


def test_template_holds_no_secret_and_leaves_generated_values_empty() -> None:
    values = parse_env_lines(TEMPLATE.read_text())
    assert set(SECRET_FILES) & set(values) == set(), "secrets live in files, not in .env"
    for key in GENERATED_KEYS - set(SECRET_FILES):
        assert key in values, f"{key} missing from .env.example"
        assert values[key] == "", f"{key} must be empty in .env.example"


def test_every_compose_variable_is_documented() -> None:
    documented = set(parse_env_lines(TEMPLATE.read_text()))
    used: set[str] = set()
    for path in (ROOT / "compose").glob("*.yaml"):
        # ${VAR}, ${VAR:-x}, ${VAR:?x}; `$${VAR}` is the container's own variable.
        used.update(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", path.read_text()))
    assert used, "no variables found in compose files"
    assert used - documented == set()


def test_init_writes_strong_secrets_to_private_files_and_none_to_env(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    result = write_env_file(TEMPLATE, target)

    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    env_values = parse_env_lines(target.read_text())
    assert set(SECRET_FILES) & {k for k, v in env_values.items() if v} == set()
    assert result.secrets_dir == tmp_path / "env" / "infra" / "secrets"
    # Not beside the template: Compose is told where the folder is.
    assert env_values["INFRA_SECRETS_DIR"] == str(result.secrets_dir)
    assert stat.S_IMODE(result.secrets_dir.stat().st_mode) == 0o700
    for path in result.secrets_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    values = _everything(result)
    assert set(result.generated) == GENERATED_KEYS
    for key in SECRET_KEYS - {"LIVEKIT_TURN_CREDENTIAL"}:
        raw = base64.urlsafe_b64decode(values[key] + "=" * (-len(values[key]) % 4))
        assert len(raw) >= 32, key
        assert re.fullmatch(r"[A-Za-z0-9_-]+", values[key]), key
    assert len({values[k] for k in SECRET_KEYS}) == len(SECRET_KEYS), "secrets must differ"
    assert len(values["LIVEKIT_API_SECRET"]) >= 32
    keys = (result.secrets_dir / LIVEKIT_KEYS_FILE).read_text()
    assert keys == f"{values['LIVEKIT_API_KEY']}: {values['LIVEKIT_API_SECRET']}\n"


def test_env_file_beside_the_template_uses_the_default_folder(tmp_path: Path) -> None:
    template = tmp_path / ".env.example"
    template.write_text(TEMPLATE.read_text())
    result = write_env_file(template, tmp_path / ".env")
    assert parse_env_lines(result.path.read_text())["INFRA_SECRETS_DIR"] == ""
    assert result.secrets_dir == tmp_path / "env" / "infra" / "secrets"


def test_two_inits_give_different_secrets(tmp_path: Path) -> None:
    a = _everything(write_env_file(TEMPLATE, tmp_path / "a" / ".env"))
    b = _everything(write_env_file(TEMPLATE, tmp_path / "b" / ".env"))
    assert a["POSTGRES_PASSWORD"] != b["POSTGRES_PASSWORD"]


def test_livekit_turn_credential_matches_turn_secret(tmp_path: Path) -> None:
    values = _everything(write_env_file(TEMPLATE, tmp_path / ".env"))
    expiry = int(values["LIVEKIT_TURN_USERNAME"].split(":")[0])
    expected = turn_credentials(values["TURN_SECRET"], "livekit", ttl_seconds=1, now=expiry - 1)
    assert values["LIVEKIT_TURN_CREDENTIAL"] == expected.credential


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("POSTGRES_PASSWORD=keep-me\n")
    with pytest.raises(EnvFileExists, match="--force"):
        write_env_file(TEMPLATE, target)
    assert target.read_text() == "POSTGRES_PASSWORD=keep-me\n"


def test_force_keeps_the_old_file_as_a_private_backup(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("POSTGRES_PASSWORD=old\n")
    target.chmod(0o644)
    old = target.read_text()
    result = write_env_file(TEMPLATE, target, force=True)
    assert result.backup is not None
    assert result.backup.read_text() == old
    assert stat.S_IMODE(result.backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_force_keeps_every_value_and_every_secret_file(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    first = write_env_file(
        TEMPLATE,
        target,
        overrides={"COMPOSE_PROJECT_NAME": "infra-b", "POSTGRES_PORT": "5532", "MY_EXTRA": "x"},
    )
    before = _everything(first)

    result = write_env_file(TEMPLATE, target, force=True)
    after = _everything(result)
    derived = {"LIVEKIT_TURN_USERNAME", "LIVEKIT_TURN_CREDENTIAL"}
    assert {k: v for k, v in after.items() if k not in derived} == {
        k: v for k, v in before.items() if k not in derived
    }
    assert after["COMPOSE_PROJECT_NAME"] == "infra-b"
    assert after["POSTGRES_PORT"] == "5532"
    assert after["MY_EXTRA"] == "x"
    assert result.replaced == ()
    # Only the TURN credential LiveKit hands out is derived afresh (renewed).
    assert set(result.generated) == derived
    expiry = int(after["LIVEKIT_TURN_USERNAME"].split(":")[0])
    expected = turn_credentials(before["TURN_SECRET"], "livekit", ttl_seconds=1, now=expiry - 1)
    assert after["LIVEKIT_TURN_CREDENTIAL"] == expected.credential
    assert {"COMPOSE_PROJECT_NAME", "POSTGRES_PASSWORD", "MY_EXTRA"} <= set(result.kept)


def test_force_moves_an_old_env_files_secrets_into_files_unchanged(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("COMPOSE_PROJECT_NAME=infra-c\nPOSTGRES_PASSWORD=kept\nREDIS_PASSWORD=\n")
    result = write_env_file(TEMPLATE, target, force=True)
    env_values = parse_env_lines(target.read_text())
    assert "POSTGRES_PASSWORD" not in env_values and "REDIS_PASSWORD" not in env_values
    after = _everything(result)
    assert after["POSTGRES_PASSWORD"] == "kept"
    assert after["REDIS_PASSWORD"]
    assert "REDIS_PASSWORD" in result.generated
    assert result.replaced == ()


def test_force_refuses_an_env_file_and_a_secret_file_that_disagree(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    result = write_env_file(TEMPLATE, target)
    text = target.read_text() + "POSTGRES_PASSWORD=something-else\n"
    target.write_text(text)
    with pytest.raises(ConfigError, match=r"POSTGRES_PASSWORD.*differ"):
        write_env_file(TEMPLATE, target, force=True)
    assert target.read_text() == text
    assert result.secrets_dir is not None
    assert read_stack_secrets(result.secrets_dir)["POSTGRES_PASSWORD"] != "something-else"


def test_new_secrets_replaces_them_and_says_which(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    before = _everything(
        write_env_file(TEMPLATE, target, overrides={"COMPOSE_PROJECT_NAME": "infra-d"})
    )
    result = write_env_file(TEMPLATE, target, force=True, new_secrets=True)
    after = _everything(result)
    assert after["COMPOSE_PROJECT_NAME"] == "infra-d"
    for key in SECRET_KEYS:
        assert after[key] != before[key], key
    assert set(result.replaced) == SECRET_KEYS - {"LIVEKIT_TURN_CREDENTIAL"}


def test_migration_moves_secrets_out_of_env_without_changing_them(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text(
        "# an older checkout\nCOMPOSE_PROJECT_NAME=old\nLIVEKIT_API_KEY=APIk\n"
        "POSTGRES_PASSWORD=pg-pass\nLIVEKIT_API_SECRET=lk-secret\nPOSTGRES_PORT=5432\n"
    )
    directory = tmp_path / "secrets"
    result = migrate_env_secrets(target, directory)
    assert set(result.removed_from_env) == {"POSTGRES_PASSWORD", "LIVEKIT_API_SECRET"}
    assert target.read_text() == (
        "# an older checkout\nCOMPOSE_PROJECT_NAME=old\nLIVEKIT_API_KEY=APIk\nPOSTGRES_PORT=5432\n"
    )
    assert read_stack_secrets(directory) == {
        "POSTGRES_PASSWORD": "pg-pass",
        "LIVEKIT_API_SECRET": "lk-secret",
    }
    assert (directory / LIVEKIT_KEYS_FILE).read_text() == "APIk: lk-secret\n"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    # Twice is a no-op.
    assert migrate_env_secrets(target, directory).removed_from_env == ()


def test_migration_scrubs_older_copies_but_keeps_values_no_file_has(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("COMPOSE_PROJECT_NAME=old\nPOSTGRES_PASSWORD=pg-pass\n")
    same = tmp_path / ".env.bak-20260101000000"
    same.write_text("COMPOSE_PROJECT_NAME=old\nPOSTGRES_PASSWORD=pg-pass\nREDIS_PASSWORD=\n")
    older = tmp_path / ".env.bak-20250101000000"
    older.write_text("POSTGRES_PASSWORD=before-new-secrets\nPOSTGRES_PORT=5432\n")
    result = migrate_env_secrets(target, tmp_path / "secrets")
    assert result.scrubbed == (same,)
    assert same.read_text() == "COMPOSE_PROJECT_NAME=old\nREDIS_PASSWORD=\n"
    assert stat.S_IMODE(same.stat().st_mode) == 0o600
    # Perhaps the value a volume still uses: kept, and named.
    assert older.read_text() == "POSTGRES_PASSWORD=before-new-secrets\nPOSTGRES_PORT=5432\n"
    assert result.still_held == ((older, ("POSTGRES_PASSWORD",)),)


def test_migration_refuses_a_clash_and_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("POSTGRES_PASSWORD=in-env\n")
    directory = tmp_path / "secrets"
    write_stack_secrets(directory, {"POSTGRES_PASSWORD": "in-file"})
    with pytest.raises(ConfigError, match="differ"):
        migrate_env_secrets(target, directory)
    assert target.read_text() == "POSTGRES_PASSWORD=in-env\n"
    assert read_stack_secrets(directory)["POSTGRES_PASSWORD"] == "in-file"


def test_an_older_checkout_keeps_working_its_secrets_are_copied(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("LIVEKIT_API_KEY=APIk\nREDIS_PASSWORD=r-pass\nLIVEKIT_API_SECRET=s\n")
    directory = tmp_path / "secrets"
    warnings = sync_secret_files(target, directory)
    assert read_stack_secrets(directory) == {"REDIS_PASSWORD": "r-pass", "LIVEKIT_API_SECRET": "s"}
    assert (directory / LIVEKIT_KEYS_FILE).read_text() == "APIk: s\n"
    assert any("--migrate-secrets" in w for w in warnings)
    assert "r-pass" not in " ".join(warnings)
    # The env file is left as it was.
    assert "REDIS_PASSWORD=r-pass" in target.read_text()


def test_missing_secret_files_are_named_per_service(tmp_path: Path) -> None:
    write_stack_secrets(tmp_path, {"POSTGRES_PASSWORD": "p"})
    assert missing_secret_files(tmp_path, ["postgres"]) == []
    assert missing_secret_files(tmp_path, ["redis", "livekit"]) == [
        tmp_path / "redis-password",
        tmp_path / LIVEKIT_KEYS_FILE,
        tmp_path / "livekit-turn-credential",
    ]


def test_secret_files_hold_one_line(tmp_path: Path) -> None:
    (tmp_path / "postgres-password").write_text("a\nb\n")
    with pytest.raises(ConfigError, match="one non-empty line"):
        read_stack_secrets(tmp_path)
    with pytest.raises(ConfigError, match="one non-empty line"):
        write_stack_secrets(tmp_path, {"REDIS_PASSWORD": "x\ny"})


def test_tighten_private_fixes_group_and_other_access_and_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "env"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    loose = folder / "a.env"
    loose.write_text("X=1\n")
    loose.chmod(0o644)
    tight = folder / "b.env"
    tight.write_text("X=1\n")
    tight.chmod(0o600)

    messages = tighten_private(files=[loose, tight, folder / "missing.env"], dirs=[folder])
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(tight.stat().st_mode) == 0o600
    assert len(messages) == 2
    assert any(str(loose) in m and "0644" in m and "0600" in m for m in messages)
    assert tighten_private(files=[loose], dirs=[folder]) == []


def test_overrides_replace_template_values(tmp_path: Path) -> None:
    result = write_env_file(
        TEMPLATE, tmp_path / ".env", overrides={"COMPOSE_PROJECT_NAME": "other", "EXTRA": "1"}
    )
    values = parse_env_lines(result.path.read_text())
    assert values["COMPOSE_PROJECT_NAME"] == "other"
    assert values["EXTRA"] == "1"


def test_missing_template_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing"):
        write_env_file(tmp_path / "nope", tmp_path / ".env")


def test_mask_hides_value_and_length() -> None:
    assert mask("a") == mask("a-much-longer-secret-value")
    assert "secret" not in mask("secret")


def test_the_environments_project_decides_where_secrets_go(tmp_path: Path) -> None:
    template = tmp_path / ".env.example"
    template.write_text(TEMPLATE.read_text())
    result = write_env_file(
        template, tmp_path / ".env", environ={"COMPOSE_PROJECT_NAME": "from-shell"}
    )
    # As for Compose: the shell's project name wins over the file's.
    assert result.secrets_dir == tmp_path / "env" / "from-shell" / "secrets"
    assert stat.S_IMODE((tmp_path / "env").stat().st_mode) == 0o700
