"""Start, stop and remove a separate throwaway project: data survives `down`."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import psycopg
import pytest

from infra_lib.stack.compose import Stack, StackPaths
from infra_lib.stack.settings import load_stack_settings

from .conftest import ROOT, isolated_environ, run_inv

pytestmark = [pytest.mark.integration, pytest.mark.lifecycle]


def _stack(env_file: Path) -> Stack:
    settings = load_stack_settings(env_file, environ=isolated_environ())
    return Stack(settings, StackPaths.for_root(ROOT, env_file))


def _connect(stack: Stack) -> psycopg.Connection[tuple[object, ...]]:
    s = stack.settings
    return psycopg.connect(
        host="127.0.0.1",
        port=s.postgres_port,
        user=s.postgres_user,
        password=s.secret("postgres_password"),
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    )


def test_data_survives_down_and_up_and_volumes_go_only_when_asked(throwaway_env: Path) -> None:
    stack = _stack(throwaway_env)
    first = run_inv("up", "--service", "postgres", "--no-provision", env_file=throwaway_env)
    assert first.returncode == 0, first.stdout + first.stderr
    with _connect(stack) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")

    down = run_inv("down", env_file=throwaway_env)
    assert down.returncode == 0, down.stderr
    assert "data volumes kept" in down.stdout
    assert stack.status(["postgres"])[0].state == "missing"
    assert stack.volumes(), "the data volume must survive a plain `down`"

    again = run_inv("up", "--service", "postgres", "--no-provision", env_file=throwaway_env)
    assert again.returncode == 0, again.stdout + again.stderr
    with _connect(stack) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("still here",)]

    refused = run_inv("down", "--volumes", env_file=throwaway_env)
    assert refused.returncode != 0
    assert "--yes" in refused.stderr
    assert stack.status(["postgres"])[0].state == "running", "a refused down must stop nothing"

    gone = run_inv("down", "--volumes", "--yes", env_file=throwaway_env)
    assert gone.returncode == 0, gone.stderr
    assert stack.volumes() == []


def test_taken_port_fails_before_starting_and_names_the_variable(throwaway_env: Path) -> None:
    stack = _stack(throwaway_env)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", stack.settings.redis_port))
        holder.listen()
        result = run_inv("up", "--service", "redis", env_file=throwaway_env)
    assert result.returncode != 0
    assert f"port {stack.settings.redis_port}/tcp" in result.stderr
    assert "REDIS_PORT" in result.stderr
    assert stack.status(["redis"])[0].state == "missing", "nothing may be started"


def test_init_refuses_to_overwrite_an_existing_env(throwaway_env: Path) -> None:
    before = throwaway_env.read_text()
    result = run_inv("init", env_file=throwaway_env)
    assert result.returncode != 0
    assert "--force" in result.stderr
    assert throwaway_env.read_text() == before


def test_missing_env_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_inv("status", env_file=tmp_path / "absent.env")
    assert result.returncode == 2
    assert "inv init" in result.stderr


def test_unknown_service_is_a_clear_error(throwaway_env: Path) -> None:
    result = run_inv("up", "--service", "mysql", env_file=throwaway_env)
    assert result.returncode == 2
    assert "known services" in result.stderr


def test_a_healthy_server_that_refuses_its_check_fails_with_its_logs(throwaway_env: Path) -> None:
    # The volume keeps the password it was made with; a changed secret file
    # leaves the container healthy (pg_isready needs no password) but the
    # host's login fails. `inv up` must say so, with the server's own words.
    stack = _stack(throwaway_env)
    first = run_inv("up", "--service", "postgres", "--no-provision", env_file=throwaway_env)
    assert first.returncode == 0, first.stdout + first.stderr
    secret = stack.settings.secrets_dir / "postgres-password"
    secret.write_text("not-the-volume-password\n")

    started = time.monotonic()
    again = run_inv(
        "up", "--service", "postgres", "--no-provision", "--timeout", "20", env_file=throwaway_env
    )
    assert again.returncode != 0
    assert time.monotonic() - started < 60, "the check must stop within what --timeout leaves"
    assert "password authentication failed" in again.stderr
    assert "--- last log lines of postgres ---" in again.stderr
    assert "inv logs postgres" in again.stderr


def test_auto_ports_lets_a_second_checkout_run_beside_the_first(
    stack: Stack, throwaway_env: Path
) -> None:
    # The second checkout's file keeps the default ports the running main
    # stack holds (throwaway_env moves only PostgreSQL and Redis).
    before = load_stack_settings(throwaway_env, environ=isolated_environ())
    assert before.minio_api_port == stack.settings.minio_api_port
    refused = run_inv("up", "--no-provision", env_file=throwaway_env)
    assert refused.returncode != 0
    assert "inv init --auto-ports" in refused.stdout + refused.stderr

    moved = run_inv("init", "--auto-ports", env_file=throwaway_env)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "moved MINIO_API_PORT" in moved.stdout
    after = load_stack_settings(throwaway_env, environ=isolated_environ())
    assert after.postgres_port == before.postgres_port  # free: kept
    assert after.compose_project_name == before.compose_project_name
    for name in ("minio_api_port", "livekit_http_port", "turn_port"):
        assert getattr(after, name) != getattr(stack.settings, name), name

    up = run_inv("up", "--no-provision", env_file=throwaway_env)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    again = run_inv("init", "--auto-ports", env_file=throwaway_env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "unchanged" in again.stdout


def test_an_unchanged_stack_skips_compose_and_a_change_recreates(throwaway_env: Path) -> None:
    stack = _stack(throwaway_env)
    state_file = ROOT / "env" / stack.project_name / "up-state.json"
    args = ("up", "--service", "redis", "--no-provision", "--verbose")
    first = run_inv(*args, env_file=throwaway_env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert state_file.is_file()
    assert "compose:" in first.stderr, "Compose's progress is logged when it runs"
    before = stack.running_ids(["redis"])

    again = run_inv(*args, env_file=throwaway_env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "compose:" not in again.stderr, "nothing changed, so Compose must not run"
    assert stack.running_ids(["redis"]) == before

    stack.stop(["redis"])
    restarted = run_inv(*args, env_file=throwaway_env)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert stack.status(["redis"])[0].ok, "a stopped container is started again"

    text = throwaway_env.read_text()
    throwaway_env.write_text(text.replace("REDIS_MAXMEMORY=256mb", "REDIS_MAXMEMORY=64mb"))
    changed = run_inv(*args, env_file=throwaway_env)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert stack.running_ids(["redis"]) != before, "a changed setting recreates the container"
    inspect = stack.docker_output(
        [
            "container",
            "inspect",
            "--format",
            "{{json .Config.Env}}",
            *stack.running_ids(["redis"]).values(),
        ]
    )
    assert "REDIS_MAXMEMORY=64mb" in inspect

    run_inv("down", env_file=throwaway_env)
    assert not state_file.exists(), "down forgets what ran"
