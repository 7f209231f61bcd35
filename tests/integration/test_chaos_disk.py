"""Disk full on PostgreSQL's data volume, on a small filesystem of its own.

The throwaway project's volume is an ext4 image on a loop device, made
before its first `inv up`, as docs/failure-experiments.md tells users to do:
the filler can then fill it without touching the host's disk.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from infra_lib.chaos import FaultLedger, recover, run_experiment
from infra_lib.chaos.container import LeftoverFault
from infra_lib.chaos.disk import FILLER_NAME, apply_disk_fault, prepare_disk_fault
from infra_lib.errors import ConfigError
from infra_lib.postgres.config import PostgresConfig
from infra_lib.stack.compose import Stack, StackPaths
from infra_lib.stack.settings import load_stack_settings
from tests.integration.conftest import ROOT, isolated_environ, run_inv
from tests.integration.test_chaos_network import _Background


def _run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done.stdout.strip()


@pytest.fixture
def small_disk(throwaway_env: Path, tmp_path: Path) -> Iterator[Stack]:
    """The throwaway project with PostgreSQL on a 128 MB volume of its own."""
    for tool in ("losetup", "mkfs.ext4", "debugfs"):
        assert shutil.which(tool), f"{tool} is needed to make a small volume (e2fsprogs, mount)"
    settings = load_stack_settings(throwaway_env, environ=isolated_environ())
    stack = Stack(settings, StackPaths.for_root(ROOT, throwaway_env))
    image = tmp_path / "postgres-data.ext4"
    _run("truncate", "-s", "128M", str(image))
    _run("mkfs.ext4", "-q", "-F", str(image))
    # initdb refuses a data directory that holds anything, lost+found too.
    _run("debugfs", "-w", "-R", "rmdir lost+found", str(image))
    device = _run("losetup", "--find", "--show", str(image))
    project = settings.compose_project_name
    try:
        _run(
            "docker", "volume", "create", "--driver", "local",
            "--opt", "type=ext4", "--opt", f"device={device}",
            "--label", f"com.docker.compose.project={project}",
            "--label", "com.docker.compose.volume=postgres-data",
            f"{project}_postgres-data",
        )  # fmt: skip
        started = run_inv("up", "--service", "postgres", "--no-provision", env_file=throwaway_env)
        assert started.returncode == 0, started.stdout + started.stderr
        yield stack
    finally:
        stack.down(volumes=True)
        _run("losetup", "-d", device)


def _connect(stack: Stack) -> psycopg.Connection[tuple[object, ...]]:
    config = PostgresConfig.from_stack(stack.settings)
    return psycopg.connect(**config.connect_kwargs(autocommit=True))


def _filler(stack: Stack) -> bool:
    out = stack.docker.container.execute(
        stack.container("postgres"),
        ["sh", "-c", f"test -e /var/lib/postgresql/data/{FILLER_NAME} && echo yes || echo no"],
    )
    return str(out).strip() == "yes"


def test_a_full_volume_fails_writes_is_named_by_status_and_loses_no_committed_row(
    small_disk: Stack, tmp_path: Path
) -> None:
    stack = small_disk
    with _connect(stack) as conn:
        conn.execute("CREATE TABLE kept (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO kept SELECT g, md5(g::text) FROM generate_series(1, 1000) g")
    ledger = FaultLedger(tmp_path / "active.json")
    running = _Background(
        lambda on_event: run_experiment(
            stack, ledger, "disk-full", "postgres", duration=8, size_mb=512, on_event=on_event
        )
    )
    with _connect(stack) as conn, pytest.raises(psycopg.Error) as refused:
        # Large enough to need new blocks for the table, whatever is cached.
        conn.execute(
            "INSERT INTO kept SELECT g, repeat('x', 2000) FROM generate_series(1001, 9000) g"
        )
    assert "No space left on device" in str(refused.value)
    status = run_inv("status", "--service", "postgres", env_file=stack.paths.env_file)
    assert status.returncode == 1, status.stdout + status.stderr
    assert "postgres: disk full" in status.stderr

    report = running.result()
    assert report.recovered, report.events
    assert not _filler(stack)
    with _connect(stack) as conn:
        conn.execute(
            "INSERT INTO kept SELECT g, repeat('x', 2000) FROM generate_series(1001, 9000) g"
        )
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE id <= 1000) FROM kept"
        ).fetchone()
    assert row == (9000, 1000)
    status = run_inv("status", "--service", "postgres", env_file=stack.paths.env_file)
    assert status.returncode == 0, status.stdout + status.stderr

    # A run that died with the filler in place: the next one deletes it first.
    container = stack.container("postgres")
    undo = prepare_disk_fault(stack, "postgres", container, 512)
    ledger.record(
        LeftoverFault("disk-full", "postgres", str(container.id), stack.project_name, "-", 0, undo)
    )
    apply_disk_fault(stack, container, undo)
    assert _filler(stack)
    message = recover(stack, ledger)
    assert message is not None and "filler deleted" in message
    assert not _filler(stack)


def test_a_volume_on_the_hosts_disk_is_refused_and_nothing_is_recorded(
    stack: Stack, tmp_path: Path
) -> None:
    ledger = FaultLedger(tmp_path / "active.json")
    with pytest.raises(ConfigError, match="a filesystem of its own"):
        run_experiment(stack, ledger, "disk-full", "postgres", duration=2, size_mb=64)
    assert ledger.read() is None
    assert not _filler(stack)


def test_the_free_space_read_on_the_host_is_what_df_in_the_container_reads(
    stack: Stack,
) -> None:
    from infra_lib.chaos.disk import DATA_PATHS, _host_usage, _mount_sources, _parse_df

    ids = stack.running_ids(list(DATA_PATHS))
    assert ids, "the stack's data services must be running"
    sources = _mount_sources(stack, list(ids.values()))
    for service, container in ids.items():
        path = DATA_PATHS[service]
        host = _host_usage(sources[container][path], path)
        assert host is not None, f"{service}: the engine here is local, its volumes readable"
        out = stack.docker_output(["exec", "--user", "0", container, "df", "-Pk", path])
        inside = _parse_df(out, path, service)
        assert abs(host.size - inside.size) < 1 << 20, service
        assert abs(host.free - inside.free) < 64 << 20, service
    assert _host_usage("/nonexistent/volume", "/data") is None
