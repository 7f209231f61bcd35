"""Every task has --help; the CLI refuses destructive input before acting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TASKS = [
    "init",
    "up",
    "down",
    "status",
    "logs",
    "provision",
    "env",
    "smoke",
    "metrics",
    "token",
    "rooms",
    "backup",
    "backups",
    "restore",
]


def _inv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("name", TASKS)
def test_every_task_documents_its_flags(name: str) -> None:
    result = _inv("--help", name)
    assert result.returncode == 0, result.stderr
    assert "Docstring:" in result.stdout
    assert "none" not in result.stdout.split("Docstring:")[1].split("\n")[1].lower()


def test_list_shows_every_task() -> None:
    listing = _inv("--list").stdout
    for name in TASKS:
        assert name in listing


def test_down_volumes_without_yes_refuses_before_reading_anything(tmp_path: Path) -> None:
    result = _inv("down", "--volumes", "--env-file", str(tmp_path / "none.env"))
    assert result.returncode == 2
    assert "--yes" in result.stderr


def test_init_writes_a_private_env_file(tmp_path: Path) -> None:
    target = tmp_path / "x.env"
    result = _inv("init", "--env-file", str(target))
    assert result.returncode == 0, result.stderr
    assert target.stat().st_mode & 0o777 == 0o600
    # Generated values are announced masked, never printed.
    secret = next(
        line.split("=", 1)[1]
        for line in target.read_text().splitlines()
        if line.startswith("POSTGRES_PASSWORD=")
    )
    assert secret not in result.stdout + result.stderr
