"""`.env` generation: secrets, file mode, refusal to overwrite."""

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
    mask,
    parse_env_lines,
    tighten_private,
    write_env_file,
)
from infra_lib.turn import turn_credentials

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / ".env.example"


def test_template_leaves_every_generated_value_empty() -> None:
    values = parse_env_lines(TEMPLATE.read_text())
    for key in GENERATED_KEYS:
        assert key in values, f"{key} missing from .env.example"
        assert values[key] == "", f"{key} must be empty in .env.example (no default secrets)"


def test_every_compose_variable_is_documented() -> None:
    documented = set(parse_env_lines(TEMPLATE.read_text()))
    used: set[str] = set()
    for path in (ROOT / "compose").glob("*.yaml"):
        # ${VAR}, ${VAR:-x}, ${VAR:?x}; `$${VAR}` is the container's own variable.
        used.update(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", path.read_text()))
    assert used, "no variables found in compose files"
    assert used - documented == set()


def test_init_generates_strong_secrets_with_mode_0600(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    result = write_env_file(TEMPLATE, target)

    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    values = parse_env_lines(target.read_text())
    assert set(result.generated) == GENERATED_KEYS
    for key in SECRET_KEYS - {"LIVEKIT_TURN_CREDENTIAL"}:
        raw = base64.urlsafe_b64decode(values[key] + "=" * (-len(values[key]) % 4))
        assert len(raw) >= 32, key
        assert re.fullmatch(r"[A-Za-z0-9_-]+", values[key]), key
    assert len({values[k] for k in SECRET_KEYS}) == len(SECRET_KEYS), "secrets must differ"
    assert len(values["LIVEKIT_API_SECRET"]) >= 32


def test_two_inits_give_different_secrets(tmp_path: Path) -> None:
    a = parse_env_lines(write_env_file(TEMPLATE, tmp_path / "a").path.read_text())
    b = parse_env_lines(write_env_file(TEMPLATE, tmp_path / "b").path.read_text())
    assert a["POSTGRES_PASSWORD"] != b["POSTGRES_PASSWORD"]


def test_livekit_turn_credential_matches_turn_secret(tmp_path: Path) -> None:
    values = parse_env_lines(write_env_file(TEMPLATE, tmp_path / ".env").path.read_text())
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


def test_force_keeps_every_value_of_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    first = write_env_file(
        TEMPLATE,
        target,
        overrides={"COMPOSE_PROJECT_NAME": "infra-b", "POSTGRES_PORT": "5532", "MY_EXTRA": "x"},
    )
    before = parse_env_lines(first.path.read_text())

    result = write_env_file(TEMPLATE, target, force=True)
    after = parse_env_lines(target.read_text())
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


def test_force_fills_secrets_that_are_empty_and_names_them(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("COMPOSE_PROJECT_NAME=infra-c\nPOSTGRES_PASSWORD=kept\nREDIS_PASSWORD=\n")
    result = write_env_file(TEMPLATE, target, force=True)
    after = parse_env_lines(target.read_text())
    assert after["POSTGRES_PASSWORD"] == "kept"
    assert after["REDIS_PASSWORD"]
    assert "REDIS_PASSWORD" in result.generated
    assert result.replaced == ()


def test_new_secrets_replaces_them_and_says_which(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    write_env_file(TEMPLATE, target, overrides={"COMPOSE_PROJECT_NAME": "infra-d"})
    before = parse_env_lines(target.read_text())
    result = write_env_file(TEMPLATE, target, force=True, new_secrets=True)
    after = parse_env_lines(target.read_text())
    assert after["COMPOSE_PROJECT_NAME"] == "infra-d"
    for key in SECRET_KEYS:
        assert after[key] != before[key], key
    assert set(result.replaced) == SECRET_KEYS - {"LIVEKIT_TURN_CREDENTIAL"}


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
