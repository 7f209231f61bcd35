"""A new backup target is one class and one register call.

The toy target keeps its "server" in a JSON file: the jobs back it up,
find the archive again, verify it, restore it and drill it, all through the
registry, with no change anywhere else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra_lib.backup import jobs
from infra_lib.backup.archive import (
    ArchiveInfo,
    ArchiveManifest,
    ArchiveWriter,
    DatasetEntry,
    list_archives,
)
from infra_lib.backup.model import CountCheck, DatasetRestore, ProgressCallback, RestoreReport
from infra_lib.backup.target import (
    BackupTarget,
    Job,
    get_target,
    register,
    target_names,
    unregister,
)
from infra_lib.errors import BackupCorrupt, ConfigError
from infra_lib.manifest import ServiceManifest
from infra_lib.stack.compose import Stack, StackPaths
from infra_lib.stack.settings import load_stack_settings


class ToyTarget(BackupTarget):
    """Key-value data in one JSON file, standing in for a server."""

    name = "toy"

    def __init__(self, store: Path) -> None:
        self.store = store

    def uses(self, service: ServiceManifest) -> bool:
        return True

    def check_details(self, dataset: str, details: dict[str, Any]) -> None:
        if dataset != "kv":
            raise ValueError(f"dataset {dataset!r} is not kv")

    def holds(self, job: Job) -> Callable[[ArchiveManifest], bool]:
        return lambda manifest: manifest.dataset("kv") is not None

    def backup(
        self, job: Job, dest: Path, *, scope: str, on_progress: ProgressCallback | None
    ) -> ArchiveInfo:
        data = json.loads(self.store.read_text())
        with ArchiveWriter(dest, self.name) as writer:
            with writer.open("kv.json") as out:
                out.write(json.dumps(data).encode())
            entry = DatasetEntry(name="kv", files=("kv.json",), counts={"keys": len(data)})
            return writer.commit(scope=scope, source={}, server={}, datasets=[entry])

    def restore(
        self,
        job: Job,
        archive: Path,
        *,
        into: str | None,
        force: bool,
        check_only: bool,
        on_progress: ProgressCallback | None,
    ) -> RestoreReport:
        data = json.loads((archive / "kv.json").read_text())
        if not check_only:
            self.store.write_text(json.dumps(data))
        check = CountCheck("keys", len(data), len(json.loads(self.store.read_text())))
        restored = DatasetRestore("kv", into or "kv", force, (check,))
        return RestoreReport(archive, self.name, (restored,), 0.0)

    def drill(
        self, job: Job, archive: Path, *, on_progress: ProgressCallback | None
    ) -> list[DatasetRestore]:
        data = json.loads((archive / "kv.json").read_text())
        return [DatasetRestore("kv", "scratch", False, (CountCheck("keys", len(data), len(data)),))]


@pytest.fixture
def toy(tmp_path: Path) -> Iterator[ToyTarget]:
    target = ToyTarget(tmp_path / "server.json")
    target.store.write_text(json.dumps({"a": 1, "b": 2}))
    register(target)
    yield target
    unregister(target.name)


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    env = tmp_path / ".env"
    env.write_text("COMPOSE_PROJECT_NAME=toy-proj\n")
    return Stack(load_stack_settings(env, environ={}), StackPaths.for_root(tmp_path, env))


def test_a_registered_target_is_backed_up_restored_and_drilled_by_the_jobs(
    toy: ToyTarget, stack: Stack, tmp_path: Path
) -> None:
    dest = tmp_path / "backups"
    assert "toy" in target_names()
    assert jobs.parse_targets("toy") == ["toy"]
    assert "toy" in jobs.parse_targets("all")

    [outcome] = jobs.backup(stack, ["toy"], dest=dest)
    assert outcome.archive.target == "toy"
    assert [a.path for a in list_archives(dest, "toy")] == [outcome.archive.path]

    toy.store.write_text(json.dumps({"a": 1}))
    [report] = jobs.restore(stack, ["toy"], dest=dest)
    assert json.loads(toy.store.read_text()) == {"a": 1, "b": 2}
    assert report.datasets[0].ok

    drill = jobs.drill(stack, "toy", dest=dest)
    assert drill.ok, drill.message


def test_a_damaged_toy_archive_is_refused_before_the_toy_changes(
    toy: ToyTarget, stack: Stack, tmp_path: Path
) -> None:
    dest = tmp_path / "backups"
    [outcome] = jobs.backup(stack, ["toy"], dest=dest)
    (outcome.archive.path / "kv.json").write_text("{}")
    toy.store.write_text(json.dumps({"changed": True}))
    with pytest.raises(BackupCorrupt):
        jobs.restore(stack, ["toy"], dest=dest)
    assert json.loads(toy.store.read_text()) == {"changed": True}


def test_names_are_taken_once_and_unknown_ones_are_refused(toy: ToyTarget) -> None:
    with pytest.raises(ConfigError, match="registered already"):
        register(ToyTarget(toy.store))
    with pytest.raises(ConfigError, match="lowercase word"):
        register(type("Bad", (ToyTarget,), {"name": "Not-A-Name"})(toy.store))
    with pytest.raises(ConfigError, match="unknown backup target 'nope'"):
        get_target("nope")
    with pytest.raises(ConfigError, match="unknown --target 'nope'"):
        jobs.parse_targets("nope")


def test_the_stack_targets_are_registered_in_order() -> None:
    assert target_names()[:3] == ("postgres", "redis", "minio")
