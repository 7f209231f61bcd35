"""Resource faults on a running container: lower limits, or load inside it.

The limits are changed in place with ``docker update``, so the server keeps
running and its clients see it slow down rather than restart. Docker cannot
clear a limit in place (moby/moby#22516: ``--memory 0`` and ``--cpus 0`` are
ignored), so a container that had none gets one as large as the engine's
machine on rollback: the same effect, and a recreate (``inv up``) shows 0 again.

The load runs as processes started with ``docker exec`` under ``timeout``,
which bounds them by itself if no rollback ever comes; their PIDs go to a
file in the container so the rollback can stop them early.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infra_lib.chaos._exec import run_in
from infra_lib.errors import ConfigError, StackError

if TYPE_CHECKING:
    from python_on_whales import Container

    from infra_lib.stack.compose import Stack

__all__ = [
    "LIMIT_FAULTS",
    "LOAD_FAULTS",
    "RESOURCE_FAULTS",
    "ResourceParams",
    "apply_resource_fault",
    "prepare_resource_fault",
    "undo_resource_fault",
]

#: Faults that lower a limit of the container (``docker update``).
LIMIT_FAULTS: dict[str, str] = {
    "cpu-limit": "the container may use only --cpus CPUs (docker update); CPU-bound work slows",
    "memory-limit": "the container's memory is capped at --memory-mb MB (docker update); "
    "past it the kernel reclaims the page cache, then kills the largest process",
}

#: Faults that add load inside the container.
LOAD_FAULTS: dict[str, str] = {
    "cpu-burn": "--workers busy loops inside the container compete with the server for CPU",
    "memory-pressure": "a process inside the container holds --memory-mb MB of memory",
}

RESOURCE_FAULTS: dict[str, str] = {**LIMIT_FAULTS, **LOAD_FAULTS}

#: Where the load's PIDs are kept inside the container (its own /tmp, not the host's).
PID_FILE = "/tmp/infra-chaos.pids"  # noqa: S108

#: Seconds the load outlives the experiment's duration if no rollback stops it.
LOAD_GRACE = 30

_TOOLS = ("sh", "timeout", "head", "tail", "sleep", "cat", "kill")

#: One worker's busy loop, or the memory holder: ``tail`` keeps a stream with
#: no newline in memory until its end, and the ``sleep`` holds that end off.
_BURN = "while :; do :; done"
_HOLD = "{{ head -c {size}M /dev/zero; sleep {seconds}; }} | tail > /dev/null"


@dataclass(frozen=True)
class ResourceParams:
    """The knobs of the resource faults; each fault reads the ones it needs."""

    cpus: float = 0.2
    memory_mb: int = 256
    workers: int = 1

    def check(self) -> None:
        """Raise ConfigError for a value that is not a limit or a load anyone means."""
        if not 0.01 <= self.cpus <= 1024:
            raise ConfigError(f"--cpus must be between 0.01 and 1024, not {self.cpus:g}")
        # Docker refuses a memory limit under 6 MB; a server needs more anyway.
        if not 6 <= self.memory_mb <= 1 << 20:
            raise ConfigError(f"--memory-mb must be between 6 and 1048576, not {self.memory_mb}")
        if not 1 <= self.workers <= 64:
            raise ConfigError(f"--workers must be between 1 and 64, not {self.workers}")

    def describe(self, fault: str) -> str:
        """The fault with its values, for the timeline."""
        if fault == "cpu-limit":
            return f"CPU limit {self.cpus:g}"
        if fault == "memory-limit":
            return f"memory limit {self.memory_mb} MB"
        if fault == "cpu-burn":
            return f"{self.workers} busy loop(s)"
        return f"{self.memory_mb} MB held"


def prepare_resource_fault(stack: Stack, fault: str, container: Container) -> dict[str, Any]:
    """What the rollback needs to know, read before the fault goes on.

    For a limit, the container's values now; for a load, a check that the
    container has the few tools the load needs, so it fails before anything
    is changed rather than half way.
    """
    if fault in LIMIT_FAULTS:
        host = container.host_config
        return {
            "nano_cpus": int(host.nano_cpus or 0),
            "memory": int(host.memory or 0),
            "memory_swap": int(host.memory_swap or 0),
        }
    if fault not in LOAD_FAULTS:
        known = ", ".join(RESOURCE_FAULTS)
        raise ConfigError(f"unknown resource fault {fault!r}; use one of: {known}")
    script = "for t in " + " ".join(_TOOLS) + "; do command -v $t >/dev/null || echo $t; done"
    missing = run_in(stack, container, ["sh", "-c", script]).split()
    if missing:
        raise StackError(
            f"{fault} runs its load inside the container, which lacks {', '.join(missing)}; "
            "use a limit fault (cpu-limit, memory-limit) on this service instead"
        )
    return {}


def apply_resource_fault(
    stack: Stack, fault: str, container: Container, params: ResourceParams, duration: float
) -> str:
    """Put ``fault`` on ``container``; say what was done."""
    what = params.describe(fault)
    if fault == "cpu-limit":
        stack.docker.container.update(container, cpus=params.cpus)
        return f"{what} set (docker update)"
    if fault == "memory-limit":
        size = params.memory_mb * 1024 * 1024
        # Swap capped at the same value: otherwise the limit is only a hint to swap.
        stack.docker.container.update(container, memory=size, memory_swap=size)
        return f"{what} set (docker update)"
    seconds = int(duration) + LOAD_GRACE
    body = _BURN if fault == "cpu-burn" else _HOLD.format(size=params.memory_mb, seconds=seconds)
    count = params.workers if fault == "cpu-burn" else 1
    # GNU timeout puts the load in a process group of its own and signals the
    # whole group, so stopping it (or its deadline) ends every process of it.
    one = f"echo $$ >> {PID_FILE}; exec timeout {seconds} sh -c {shlex.quote(body)}"
    for _ in range(count):
        stack.docker.container.execute(container, ["sh", "-c", one], detach=True)
    return f"{what} inside the container (ends by itself after {seconds} s)"


def undo_resource_fault(stack: Stack, fault: str, container_id: str, undo: dict[str, Any]) -> str:
    """Take ``fault`` off the container; say what was done."""
    from python_on_whales.exceptions import NoSuchContainer

    try:
        container = stack.docker.container.inspect(container_id)
    except NoSuchContainer:
        return "its container is gone; `inv up` makes a new one, without the fault"
    if fault == "cpu-limit":
        before = int(undo.get("nano_cpus", 0))
        if before > 0:
            stack.docker.container.update(container, cpus=before / 1e9)
            return f"CPU limit back to {before / 1e9:g}"
        cpus = int(stack.docker.system.info().n_cpu or 1)
        stack.docker.container.update(container, cpus=cpus)
        return f"CPU limit lifted (set to the engine's {cpus} CPUs)"
    if fault == "memory-limit":
        before = int(undo.get("memory", 0))
        if before > 0:
            swap = int(undo.get("memory_swap", 0)) or before
            stack.docker.container.update(container, memory=before, memory_swap=swap)
            return f"memory limit back to {before // (1024 * 1024)} MB"
        total = int(stack.docker.system.info().mem_total or 0)
        # An explicit swap cap above the new limit, not -1: on cgroup v1 the
        # runtime then raises the swap cap first, as the kernel requires.
        stack.docker.container.update(container, memory=total, memory_swap=2 * total)
        return f"memory limit lifted (set to the engine's {total // (1024 * 1024)} MB)"
    if not container.state.running or container.state.paused:
        # A stopped container's processes are gone with it; a paused one
        # cannot run the kill, and its load ends by its own deadline.
        return f"the container is {container.state.status}; its load is not running"
    script = (
        f"n=0; for p in $(cat {PID_FILE} 2>/dev/null); do kill $p 2>/dev/null && n=$((n+1)); "
        f"done; rm -f {PID_FILE}; echo $n"
    )
    stopped = run_in(stack, container, ["sh", "-c", script])
    return f"load stopped ({stopped.strip() or 0} process(es))"
