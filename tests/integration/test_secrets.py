"""Secrets as files: no container shows one, no process argument holds one."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from infra_lib.stack.compose import Stack
from infra_lib.stack.secrets import SECRET_FILES, read_stack_secrets

ROOT = Path(__file__).resolve().parents[2]

CORE = ("postgres", "redis", "minio", "livekit", "coturn")


def _secret_values(stack: Stack) -> dict[str, str]:
    values = read_stack_secrets(stack.settings.secrets_dir)
    assert set(values) == set(SECRET_FILES), "every secret of the stack has its file"
    return values


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed"
    return path


def _inspect(stack: Stack, service: str) -> dict[str, object]:
    containers = stack.docker.compose.ps(services=[service])
    assert containers, f"{service} is not running"
    out = subprocess.run(
        [_tool("docker"), "inspect", containers[0].id], capture_output=True, text=True, check=True
    ).stdout
    record: dict[str, object] = json.loads(out)[0]
    return record


@pytest.mark.parametrize("service", CORE)
def test_docker_inspect_shows_no_secret(stack: Stack, service: str) -> None:
    record = _inspect(stack, service)
    config = record["Config"]
    assert isinstance(config, dict)
    shown = json.dumps(
        {
            "Env": config.get("Env"),
            "Cmd": config.get("Cmd"),
            "Entrypoint": config.get("Entrypoint"),
            "Labels": config.get("Labels"),
            "Args": record.get("Args"),
            "Path": record.get("Path"),
        }
    )
    for key, value in _secret_values(stack).items():
        assert value not in shown, f"{service}: {key} is visible in docker inspect"
    # The whole record (mounts, host config) holds none either.
    everything = json.dumps(record)
    for key, value in _secret_values(stack).items():
        assert value not in everything, f"{service}: {key} is somewhere in docker inspect"


@pytest.mark.parametrize("service", CORE)
def test_no_process_in_the_container_has_a_secret_in_its_arguments(
    stack: Stack, service: str
) -> None:
    script = 'for p in /proc/[0-9]*; do tr "\\0" " " < "$p/cmdline"; echo; done'
    listing = stack.docker.compose.execute(service, ["sh", "-c", script], tty=False)
    assert isinstance(listing, str)
    for key, value in _secret_values(stack).items():
        assert value not in listing, f"{service}: {key} is in a process's arguments"


def test_secret_files_are_private(stack: Stack) -> None:
    folder = stack.settings.secrets_dir
    assert folder.stat().st_mode & 0o077 == 0
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path


def test_turnserver_runs_unprivileged(stack: Stack) -> None:
    script = (
        'for p in /proc/[0-9]*; do if [ "$(cat "$p/comm" 2>/dev/null)" = turnserver ]; then '
        'grep "^Uid:" "$p/status"; fi; done'
    )
    out = stack.docker.compose.execute("coturn", ["sh", "-c", script], tty=False)
    assert isinstance(out, str)
    uids = {line.split()[1] for line in out.splitlines() if line.startswith("Uid:")}
    assert uids and "0" not in uids, out


def test_no_host_process_shows_a_secret_during_a_backup(stack: Stack, tmp_path: Path) -> None:
    values = _secret_values(stack)
    ps = _tool("ps")
    seen: list[str] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen.append(
                subprocess.run(
                    [ps, "-eww", "-o", "args"], capture_output=True, text=True, check=False
                ).stdout
            )

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        result = subprocess.run(
            [str(ROOT / "run"), "inv", "backup", "--target", "all", "--to", str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        done.set()
        watcher.join()
    assert result.returncode == 0, result.stderr
    assert len(seen) > 3
    listing = "\n".join(seen)
    for key, value in values.items():
        assert value not in listing, f"{key} was in a process's arguments during the backup"
        assert value not in result.stdout + result.stderr, f"{key} was printed"
