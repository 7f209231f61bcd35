"""Fixtures for tests against the running compose stack.

The stack is the one `inv up` started for this checkout (its `.env`). A
service that is not running healthy fails the test: in CI a missing server is
a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra_lib.stack.compose import Stack, StackPaths
from infra_lib.stack.envfile import write_env_file
from infra_lib.stack.settings import StackSettings, load_stack_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def stack() -> Stack:
    paths = StackPaths.for_root(ROOT)
    if not paths.env_file.exists():
        pytest.fail(f"{paths.env_file} is missing: start the stack with `inv up` first")
    settings = load_stack_settings(paths.env_file, environ=os.environ)
    # As the tasks build it: the observability layer's secrets for Compose.
    secrets_env = ROOT / "env" / settings.compose_project_name / "observability" / "secrets.env"
    running = Stack(settings, paths, extra_env_files=[secrets_env])
    bad = [s for s in running.status() if not s.ok]
    if bad:
        pytest.fail(
            "the stack is not running healthy ("
            + ", ".join(f"{s.name}: {s.state}/{s.health}" for s in bad)
            + "); start it with `inv up`"
        )
    return running


@pytest.fixture(scope="session")
def settings(stack: Stack) -> StackSettings:
    return stack.settings


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def host_gateway_address(stack: Stack, service: str) -> str:
    """The address ``host.docker.internal`` has inside ``service``'s container.

    A server a test starts on the host binds to it (Docker's bridge), not
    0.0.0.0, so only the containers reach it.
    """
    hosts = stack.docker.compose.execute(service, ["cat", "/etc/hosts"], tty=False)
    for line in str(hosts).splitlines():
        parts = line.split()
        if len(parts) >= 2 and "host.docker.internal" in parts[1:]:
            return parts[0]
    pytest.fail(f"host.docker.internal is not in {service}'s /etc/hosts:\n{hosts}")


def isolated_environ() -> dict[str, str]:
    """The process environment without stack settings, images excepted.

    A throwaway project must get its ports and name from its own env file,
    even when the shell exports e.g. POSTGRES_PORT for the main stack.
    """
    settings_keys = {name.upper() for name in StackSettings.model_fields}
    return {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in settings_keys or k.upper().endswith("_IMAGE")
    }


def run_inv(*args: str, env_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run an Invoke task in a child process, as a user would.

    With ``env_file`` (a throwaway project) the child sees that file's
    settings only, not the main stack's exported overrides.
    """
    command = [sys.executable, "-m", "invoke", *args]
    env = None
    if env_file is not None:
        command += ["--env-file", str(env_file)]
        env = isolated_environ()
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False, env=env
    )


@pytest.fixture
def throwaway_env(tmp_path: Path) -> Iterator[Path]:
    """An env file for a separate compose project on free ports, removed afterwards."""
    name = f"infra-test-{os.getpid()}-{tmp_path.name[-6:]}".lower().replace("_", "-")
    overrides = {
        "COMPOSE_PROJECT_NAME": name,
        "POSTGRES_PORT": str(free_port()),
        "REDIS_PORT": str(free_port()),
    }
    env_file = write_env_file(ROOT / ".env.example", tmp_path / ".env", overrides=overrides).path
    yield env_file
    settings = load_stack_settings(env_file, environ=isolated_environ())
    Stack(settings, StackPaths.for_root(ROOT, env_file)).down(volumes=True)
    shutil.rmtree(ROOT / "env" / name, ignore_errors=True)
