"""Disk full on a service's data volume: a bounded filler file, removed on rollback.

The filler is one file in the volume, written by ``dd`` until the volume
has no room left or ``--size-mb`` is reached, whichever comes first. A
volume with more free space than ``--size-mb`` is refused rather than
partly filled: a Docker volume on the host's disk shares that disk, and the
host's disk is never to be filled. Such a volume has to get a filesystem of
its own first (see docs/failure-experiments.md, "A volume of its own").

Nothing of the service's data is touched: the rollback deletes the filler,
and only the filler, by its fixed name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra_lib.chaos._exec import run_in
from infra_lib.errors import ConfigError, StackError

if TYPE_CHECKING:
    from python_on_whales import Container

    from infra_lib.stack.compose import Stack

__all__ = [
    "DATA_PATHS",
    "DISK_FAULTS",
    "FILLER_NAME",
    "VolumeUsage",
    "apply_disk_fault",
    "full_volumes",
    "prepare_disk_fault",
    "undo_disk_fault",
    "volume_usage",
]

DISK_FAULTS: dict[str, str] = {
    "disk-full": "a filler file takes the free space of the service's data volume (at most "
    "--size-mb); writes fail with 'No space left on device'; the rollback deletes it",
}

#: Where each service keeps its data, as mounted in compose/*.yaml.
DATA_PATHS: dict[str, str] = {
    "postgres": "/var/lib/postgresql/data",
    "redis": "/data",
    "minio": "/data",
}

#: The filler's name in the volume; hidden, and no server's file is named so.
FILLER_NAME = ".infra-chaos-filler"

#: Largest filler accepted, MB: far beyond any volume meant for an experiment.
MAX_FILLER_MB = 64 * 1024


@dataclass(frozen=True)
class VolumeUsage:
    """Size and free space of the filesystem under a path in a container."""

    path: str
    size: int
    free: int

    @property
    def full(self) -> bool:
        """Under 2 % (or 1 MiB) free: a server's next write of any size may fail."""
        return self.free < max(self.size // 50, 1 << 20)

    def describe(self) -> str:
        """e.g. ``0.4 MB free of 60 MB``."""
        return f"{_mb(self.free)} free of {_mb(self.size)}"


def _mb(value: int) -> str:
    return f"{value / 1e6:.1f} MB" if value < 10**10 else f"{value / 1e9:.1f} GB"


def volume_usage(stack: Stack, container: Container, path: str) -> VolumeUsage:
    """``df`` of ``path`` inside the running ``container``."""
    return _parse_df(_run_as_root(stack, container, ["df", "-Pk", path]), path, container.name)


def _parse_df(out: str, path: str, where: str) -> VolumeUsage:
    lines = out.strip().splitlines()
    try:
        fields = lines[-1].split()
        size, free = int(fields[1]) * 1024, int(fields[3]) * 1024
    except (IndexError, ValueError):
        raise StackError(f"could not read the free space of {path} in {where}: {out!r}") from None
    return VolumeUsage(path, size, free)


def data_path(service: str) -> str:
    """The data path of ``service``; ConfigError for one without a data volume."""
    try:
        return DATA_PATHS[service]
    except KeyError:
        raise ConfigError(
            f"disk-full needs a service with a data volume: one of {', '.join(DATA_PATHS)}, "
            f"not {service!r}"
        ) from None


def prepare_disk_fault(
    stack: Stack, service: str, container: Container, size_mb: int
) -> dict[str, Any]:
    """Check the volume can be filled within ``size_mb``; what the rollback needs."""
    if not 1 <= size_mb <= MAX_FILLER_MB:
        raise ConfigError(f"--size-mb must be between 1 and {MAX_FILLER_MB}, not {size_mb}")
    path = data_path(service)
    usage = volume_usage(stack, container, path)
    if usage.free > size_mb * 1024 * 1024:
        raise ConfigError(
            f"{service}'s volume at {path} has {_mb(usage.free)} free, more than --size-mb "
            f"{size_mb}: the filler would not fill it, and it may share the host's disk, "
            "which is never filled. Give the volume a filesystem of its own (see "
            "docs/failure-experiments.md, 'A volume of its own'), or raise --size-mb if "
            "the volume really is that small"
        )
    return {"filler": f"{path}/{FILLER_NAME}", "size_mb": size_mb}


def apply_disk_fault(stack: Stack, container: Container, undo: dict[str, Any]) -> str:
    """Write the filler; say how much it took and what is left."""
    filler = str(undo["filler"])
    # dd stops at "No space left on device" with a non-zero status, which
    # here is the point; the size it reached is read back instead.
    script = (
        f"dd if=/dev/zero of={filler} bs=1048576 count={int(undo['size_mb'])} 2>/dev/null; "
        f"sync; wc -c < {filler}"
    )
    written = _run_as_root(stack, container, ["sh", "-c", script])
    usage = volume_usage(stack, container, filler.rsplit("/", 1)[0])
    return f"filler of {_mb(int(written.strip() or 0))} written; {usage.describe()}"


def undo_disk_fault(stack: Stack, container_id: str, undo: dict[str, Any]) -> str:
    """Delete the filler (only it); say what was done."""
    from python_on_whales.exceptions import DockerException, NoSuchContainer

    filler = str(undo.get("filler", ""))
    if not filler.endswith("/" + FILLER_NAME):
        raise StackError(f"the fault ledger names {filler!r} as the filler; delete it by hand")
    try:
        container = stack.docker.container.inspect(container_id)
    except NoSuchContainer:
        return (
            f"its container is gone; the filler {filler} is still in the volume: "
            f"`inv up`, then `docker compose exec <service> rm {filler}`"
        )
    if container.state.running and not container.state.paused:
        _run_as_root(stack, container, ["rm", "-f", filler])
        return f"filler deleted ({filler})"
    # A server that stopped on the full disk: reach its volume through a
    # throwaway container of the same image.
    try:
        stack.docker.run(
            str(container.config.image),
            ["-f", filler],
            entrypoint="rm",
            user="0",
            volumes_from=[container.id],
            remove=True,
        )
    except DockerException as exc:
        raise StackError(
            f"could not delete the filler {filler} of the stopped {container.name}: "
            f"{str(exc).strip().splitlines()[-1]}"
        ) from exc
    return f"filler deleted ({filler}) through a helper container; {container.name} is stopped"


def _run_as_root(stack: Stack, container: Container, command: list[str]) -> str:
    # As root: the filler may take the blocks a filesystem keeps for root.
    return run_in(stack, container, command, user="0")


def full_volumes(stack: Stack, services: list[str]) -> dict[str, VolumeUsage]:
    """The data volumes among ``services``' running containers that are full.

    ``inv status`` runs this on every call, so it asks the engine once where
    each data path is mounted from and, when the engine runs on this host
    and that directory can be read here, measures it with ``statvfs`` (what
    ``df`` in the container would read, without a 0.1 s ``docker exec``).
    Otherwise one ``df`` per service runs in its container, side by side. A
    service whose container is not running, or cannot run ``df``, is left
    out (its state says enough).
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(item: tuple[str, str]) -> tuple[str, VolumeUsage | None]:
        service, container = item
        path = DATA_PATHS[service]
        source = sources.get(container, {}).get(path)
        usage = _host_usage(source, path) if source else None
        if usage is not None:
            return service, usage
        try:
            out = stack.docker_output(["exec", "--user", "0", container, "df", "-Pk", path])
            return service, _parse_df(out, path, service)
        except StackError:
            return service, None

    wanted = [s for s in services if s in DATA_PATHS]
    if not wanted:
        return {}
    running = list(stack.running_ids(wanted).items())
    if not running:
        return {}
    sources = _mount_sources(stack, [c for _, c in running]) if _engine_is_local() else {}
    with ThreadPoolExecutor(len(running)) as pool:
        found = list(pool.map(one, running))
    return {name: usage for name, usage in found if usage is not None and usage.full}


def _engine_is_local() -> bool:
    """Whether the engine's paths are this machine's (not a VM's or another host's)."""
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return False
    context = os.environ.get("DOCKER_CONTEXT")
    if context is None:
        config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
        try:
            context = json.loads(config.read_text()).get("currentContext")
        except (OSError, ValueError, AttributeError):
            context = None
    # Docker Desktop's contexts run the engine in a VM whose paths are not ours.
    return context in (None, "", "default")


def _mount_sources(stack: Stack, containers: list[str]) -> dict[str, dict[str, str]]:
    """Per container ID, each mount's destination and its source on the engine's host."""
    try:
        out = stack.docker_output(
            [
                "container",
                "inspect",
                "--format",
                "{{.Id}}{{range .Mounts}}\t{{.Destination}}={{.Source}}{{end}}",
                *containers,
            ]
        )
    except StackError:
        return {}
    found: dict[str, dict[str, str]] = {}
    for line in out.splitlines():
        container, *mounts = line.split("\t")
        found[container] = dict(m.split("=", 1) for m in mounts if "=" in m)
    return found


def _host_usage(source: str, path: str) -> VolumeUsage | None:
    """``df`` of the mount's source read here, or ``None`` when it cannot be read."""
    try:
        if not Path(source).is_dir():
            return None
        stat = os.statvfs(source)
    except OSError:
        return None
    return VolumeUsage(path, stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize)
