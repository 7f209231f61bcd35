"""A checkout never acts on another checkout's stack, and keeps its secrets private."""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from python_on_whales import DockerClient

from infra_lib.stack.settings import StackSettings

from .conftest import ROOT, run_inv

pytestmark = pytest.mark.integration


@pytest.fixture
def other_checkout(tmp_path: Path, throwaway_env: Path) -> Iterator[Path]:
    """A container of ``throwaway_env``'s project, created by Compose from another directory."""
    project = _project(throwaway_env)
    other = tmp_path / "other-checkout" / "compose"
    other.mkdir(parents=True)
    image = os.environ.get("REDIS_IMAGE", "redis:7.4.6-alpine")
    (other / "compose.yaml").write_text(
        f"services:\n  redis:\n    image: {image}\n    entrypoint: [sleep, infinity]\n"
    )
    docker = DockerClient(
        compose_files=[other / "compose.yaml"],
        compose_project_name=project,
        compose_project_directory=other,
    )
    docker.compose.up(detach=True)
    try:
        yield other
    finally:
        docker.compose.down(timeout=1)


def _running(directory: Path, project: str) -> bool:
    found = DockerClient().container.list(
        filters=[
            ("label", f"com.docker.compose.project={project}"),
            ("label", f"com.docker.compose.project.working_dir={directory}"),
        ]
    )
    return bool(found)


@pytest.mark.parametrize(
    "args",
    [
        ["up", "--service", "redis", "--no-provision"],
        ["down"],
        ["down", "--volumes", "--yes"],
        ["provision"],
        ["backup", "--target", "redis"],
        ["restore", "--target", "redis", "--force"],
    ],
    ids=lambda a: " ".join(a),
)
def test_mutating_tasks_refuse_another_checkouts_project(
    other_checkout: Path, throwaway_env: Path, args: list[str]
) -> None:
    project = _project(throwaway_env)
    result = run_inv(*args, env_file=throwaway_env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "belongs to another checkout" in result.stderr
    assert str(other_checkout) in result.stderr
    assert "--allow-foreign-project" in result.stderr
    assert "INFRA_ALLOW_FOREIGN_PROJECT=1" in result.stderr
    assert _running(other_checkout, project), "a refused task must leave the stack alone"


def test_status_warns_and_the_override_lets_down_act(
    other_checkout: Path, throwaway_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(throwaway_env)
    status = run_inv("status", "--service", "redis", env_file=throwaway_env)
    assert f"created from {other_checkout}, not this checkout" in status.stderr
    listing = run_inv("backups", env_file=throwaway_env)
    assert listing.returncode == 0, listing.stderr

    monkeypatch.setenv("INFRA_ALLOW_FOREIGN_PROJECT", "1")
    dry = run_inv("provision", "--dry-run", "--service", "auth-service", env_file=throwaway_env)
    assert "another checkout" not in dry.stderr
    monkeypatch.delenv("INFRA_ALLOW_FOREIGN_PROJECT")

    down = run_inv("down", "--allow-foreign-project", env_file=throwaway_env)
    assert down.returncode == 0, down.stderr
    assert not _running(other_checkout, project)


def test_this_checkouts_own_project_is_not_foreign(settings: StackSettings) -> None:
    result = run_inv("provision", "--dry-run", "--service", "auth-service")
    assert result.returncode == 0, result.stderr
    assert "another checkout" not in result.stderr


def test_env_files_readable_by_others_are_tightened_with_a_warning(
    settings: StackSettings, tmp_path: Path
) -> None:
    env_copy = tmp_path / ".env"
    # The child sees only this file, so it names the project the shell may
    # have exported instead (CI exports COMPOSE_PROJECT_NAME).
    text = re.sub(
        r"^COMPOSE_PROJECT_NAME=.*$",
        f"COMPOSE_PROJECT_NAME={settings.compose_project_name}",
        (ROOT / ".env").read_text(),
        flags=re.MULTILINE,
    )
    # A copy kept elsewhere names the secrets folder, as `inv init` writes it.
    text += f"INFRA_SECRETS_DIR={settings.secrets_dir}\n"
    env_copy.write_text(text)
    env_copy.chmod(0o644)
    old_copy = tmp_path / ".env.bak-20260101000000"
    shutil.copyfile(ROOT / ".env", old_copy)
    old_copy.chmod(0o644)
    folder = ROOT / "env" / settings.compose_project_name
    service_env = folder / "auth-service.env"
    assert service_env.is_file(), "provision the stack first (`inv up`)"
    service_env.chmod(0o644)
    folder.chmod(0o755)

    result = run_inv("provision", "--service", "auth-service", env_file=env_copy)
    assert result.returncode == 0, result.stderr
    expected = ((env_copy, 0o600), (old_copy, 0o600), (service_env, 0o600), (folder, 0o700))
    for path, mode in expected:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
        assert f"{path} holds secrets but was mode" in result.stderr

    again = run_inv("env", "auth-service", env_file=env_copy)
    assert again.returncode == 0, again.stderr
    assert "holds secrets" not in again.stderr


def _project(env_file: Path) -> str:
    return next(
        line.split("=", 1)[1]
        for line in env_file.read_text().splitlines()
        if line.startswith("COMPOSE_PROJECT_NAME=")
    )
