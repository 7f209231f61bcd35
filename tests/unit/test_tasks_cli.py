"""Every task has --help; the CLI refuses destructive input before acting."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from invoke.collection import Collection

import tasks
from infra_lib.stack.envfile import parse_env_lines
from infra_lib.stack.secrets import read_stack_secrets

ROOT = Path(__file__).resolve().parents[2]
TASKS = [
    "init",
    "up",
    "down",
    "status",
    "logs",
    "provision",
    "rotate",
    "env",
    "test-cleanup",
    "smoke",
    "metrics",
    "chaos",
    "gateway",
    "routes",
    "trust",
    "token",
    "rooms",
    "backup",
    "backups",
    "restore",
    "snapshot",
    "snapshots",
    "seed",
    "reset",
]


@pytest.fixture(autouse=True)
def project(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A compose project of the test's own, removed afterwards.

    `inv init` makes the project's CA under env/<project>/; with the shell's
    project that would be the running stack's folder, which integration tests
    use at the same time.
    """
    name = f"unit-cli-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", name)
    yield name
    shutil.rmtree(ROOT / "env" / name, ignore_errors=True)


def _inv(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.mark.parametrize("name", TASKS)
def test_every_task_documents_its_flags(name: str) -> None:
    result = _inv("--help", name)
    assert result.returncode == 0, result.stderr
    assert "Docstring:" in result.stdout
    assert "none" not in result.stdout.split("Docstring:")[1].split("\n")[1].lower()


def test_list_shows_every_task() -> None:
    listing = _inv("--list").stdout
    # The first word of each indented line: "up" must not pass for being inside "backup".
    listed = {
        line.split()[0]
        for line in listing.splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    }
    assert listed == set(TASKS)


def test_down_volumes_without_yes_refuses_before_reading_anything(tmp_path: Path) -> None:
    result = _inv("down", "--volumes", "--env-file", str(tmp_path / "none.env"))
    assert result.returncode == 2
    assert "--yes" in result.stderr


def _all_values(env_file: Path) -> dict[str, str]:
    """An env file's values plus those of the secret files it points at."""
    values = parse_env_lines(env_file.read_text())
    return {**values, **read_stack_secrets(Path(values["INFRA_SECRETS_DIR"]))}


def test_init_writes_a_private_env_file(tmp_path: Path) -> None:
    target = tmp_path / "x.env"
    result = _inv("init", "--env-file", str(target))
    assert result.returncode == 0, result.stderr
    assert target.stat().st_mode & 0o777 == 0o600
    assert "POSTGRES_PASSWORD" not in parse_env_lines(target.read_text())
    # Generated values are announced masked, never printed.
    secret = _all_values(target)["POSTGRES_PASSWORD"]
    assert secret not in result.stdout + result.stderr
    assert "secret files" in result.stdout


def test_init_migrate_secrets_moves_them_and_prints_none(tmp_path: Path) -> None:
    target = tmp_path / "x.env"
    assert _inv("init", "--env-file", str(target)).returncode == 0
    before = _all_values(target)
    secrets_dir = Path(before["INFRA_SECRETS_DIR"])
    shutil.rmtree(secrets_dir)
    # An older checkout: the passwords sit in the env file.
    with target.open("a") as handle:
        handle.write(f"POSTGRES_PASSWORD={before['POSTGRES_PASSWORD']}\n")
        handle.write(f"REDIS_PASSWORD={before['REDIS_PASSWORD']}\n")

    result = _inv("init", "--migrate-secrets", "--env-file", str(target))
    assert result.returncode == 0, result.stderr
    assert "removed POSTGRES_PASSWORD, REDIS_PASSWORD" in result.stdout
    assert before["POSTGRES_PASSWORD"] not in result.stdout + result.stderr
    assert "POSTGRES_PASSWORD" not in parse_env_lines(target.read_text())
    moved = read_stack_secrets(secrets_dir)
    assert moved["POSTGRES_PASSWORD"] == before["POSTGRES_PASSWORD"]
    assert moved["REDIS_PASSWORD"] == before["REDIS_PASSWORD"]


# Flags that reveal secrets, skip a confirmation or destroy data.
DANGEROUS = {"show_secrets", "force", "yes", "volumes", "new_secrets", "allow_foreign_project"}


def _task_flags() -> list[tuple[str, str, list[str]]]:
    collection = Collection.from_module(tasks)
    rows = []
    for name in collection.task_names:
        for argument in collection[name].get_arguments():
            rows.append((name, argument.attr_name or argument.name, list(argument.names)))
    return rows


def test_the_collection_is_the_documented_task_list() -> None:
    assert sorted(Collection.from_module(tasks).task_names) == sorted(TASKS)


@pytest.mark.parametrize(("task", "flag", "names"), _task_flags(), ids=lambda x: str(x))
def test_no_short_flag_is_help_or_reveals_or_destroys(
    task: str, flag: str, names: list[str]
) -> None:
    short = [n for n in names if len(n) == 1]
    assert "h" not in short, f"inv {task}: -h belongs to help, not --{names[0]}"
    assert all(n.isalnum() for n in short), f"inv {task}: --{names[0]} has short flag {short}"
    if flag in DANGEROUS:
        assert short == [], f"inv {task}: --{names[0]} must have no short flag, has {short}"


def test_dangerous_flags_exist_where_expected() -> None:
    # Guards the list above against renames that would make it vacuous.
    flags = {(task, flag) for task, flag, _ in _task_flags()}
    assert {
        ("env", "show_secrets"),
        ("init", "force"),
        ("init", "new_secrets"),
        ("down", "volumes"),
        ("down", "yes"),
        ("reset", "yes"),
        ("restore", "force"),
        ("up", "allow_foreign_project"),
    } <= flags


@pytest.mark.parametrize(
    "args",
    [
        ["env", "user-service", "-h"],
        ["token", "--room", "r", "--identity", "i", "-h"],
        ["restore", "-h"],
    ],
)
def test_dash_h_after_a_task_prints_its_help(args: list[str]) -> None:
    result = _inv(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: inv[oke] [--core-opts] {args[0]}")


def test_init_force_keeps_the_project_ports_and_secrets(tmp_path: Path) -> None:
    target = tmp_path / "x.env"
    assert _inv("init", "--env-file", str(target)).returncode == 0
    text = target.read_text()
    text = text.replace("COMPOSE_PROJECT_NAME=infra\n", "COMPOSE_PROJECT_NAME=infra-two\n")
    text = text.replace("POSTGRES_PORT=5432\n", "POSTGRES_PORT=5632\n")
    target.write_text(text)
    before = _all_values(target)

    result = _inv("init", "--force", "--env-file", str(target))
    assert result.returncode == 0, result.stderr
    after = _all_values(target)
    for key in (
        "COMPOSE_PROJECT_NAME",
        "POSTGRES_PORT",
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_PASSWORD",
    ):
        assert after[key] == before[key], key
    assert "kept the secrets" in result.stdout
    assert before["POSTGRES_PASSWORD"] not in result.stdout + result.stderr


def test_init_new_secrets_says_the_volumes_keep_the_old_ones(tmp_path: Path) -> None:
    target = tmp_path / "x.env"
    assert _inv("init", "--env-file", str(target)).returncode == 0
    before = _all_values(target)
    refused = _inv("init", "--new-secrets", "--env-file", str(target))
    assert refused.returncode == 2
    assert "--force" in refused.stderr

    result = _inv("init", "--force", "--new-secrets", "--env-file", str(target))
    assert result.returncode == 0, result.stderr
    after = _all_values(target)
    assert after["POSTGRES_PASSWORD"] != before["POSTGRES_PASSWORD"]
    assert "replaced" in result.stdout and "POSTGRES_PASSWORD" in result.stdout
    assert "data volumes still hold the old" in result.stdout
    assert after["POSTGRES_PASSWORD"] not in result.stdout + result.stderr


def test_env_of_a_service_not_in_the_manifest_says_so(tmp_path: Path, project: str) -> None:
    target = tmp_path / "x.env"
    assert _inv("init", "--env-file", str(target)).returncode == 0
    text = target.read_text().replace(
        "COMPOSE_PROJECT_NAME=infra\n", f"COMPOSE_PROJECT_NAME={project}\n"
    )
    target.write_text(text)

    # The file's project, not one the shell exports (CI exports one).
    environ = {k: v for k, v in os.environ.items() if k != "COMPOSE_PROJECT_NAME"}
    unknown = _inv("env", "nosuch-service", "--env-file", str(target), env=environ)
    assert unknown.returncode == 2
    assert "no service 'nosuch-service' in" in unknown.stderr
    assert "known: user-service, auth-service" in unknown.stderr
    assert "inv provision" not in unknown.stderr

    unprovisioned = _inv("env", "board-service", "--env-file", str(target), env=environ)
    assert unprovisioned.returncode == 2
    assert "run `inv provision`" in unprovisioned.stderr


@pytest.mark.parametrize("action", ["reload", "check"])
def test_gateway_takes_its_action_as_a_word(action: str) -> None:
    from invoke.parser import Parser

    parser = Parser(contexts=Collection.from_module(tasks).to_contexts())
    (parsed,) = parser.parse_argv(["gateway", action])
    assert parsed.args["action"].value == action
