"""Leases on test sessions' resources: who holds them, and whether it still lives.

A test session (or pytest-xdist worker) takes a lease under its tag *before*
it creates anything, renews it while it runs, and gives it back after it has
removed what it made. A session killed with SIGKILL never gives it back; the
lease then says who held it, so another session or ``inv test-cleanup`` can
tell a dead holder from a live one and reclaim the dead one's resources.

A holder is dead when

- it ran in this PID namespace (same host, boot and ``/proc/self/ns/pid``)
  and its process is gone, or the PID now belongs to a younger process; or
- it ran elsewhere and has not renewed its lease within the TTL.

Leases are one Redis hash (``infra:test-leases`` in the registry DB, outside
every service's key prefix). Taking a dead lease over is one Lua script, so
of several sessions starting at once exactly one reclaims each dead session.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from infra_lib._closing import Closing
from infra_lib.errors import InfraError
from infra_lib.redis.config import translate_errors

if TYPE_CHECKING:
    import redis

    from infra_lib.redis.config import RedisConfig

__all__ = ["DEFAULT_TTL", "LEASE_KEY", "Heartbeat", "Lease", "LeaseStore", "this_machine"]

_log = logging.getLogger(__name__)

#: The hash of leases: tag -> JSON lease.
LEASE_KEY = "infra:test-leases"

#: Seconds a lease of a holder on another machine stays valid without renewal.
DEFAULT_TTL = 600.0

# Replace the lease only if it is still the one the caller read.
_TAKE_LUA = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""


def this_machine() -> str:
    """``host/boot id/PID namespace``: equal exactly when PIDs mean the same process."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(Path("/proc/self/ns/pid").stat().st_ino))
    except OSError:
        # No /proc (macOS): the host name alone; PIDs are still checked below.
        pass
    return "/".join(parts)


def _process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot); None if unknown, gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after it don't.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        # Killed, not yet reaped by its parent: it runs no more.
        return None
    return int(fields[19])


def _process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc/self/stat").exists() and _signal_reaches(pid)
    except OSError:
        # /proc hides other users' processes (hidepid): ask the kernel instead.
        return _signal_reaches(pid)
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def _signal_reaches(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # It exists, as another user's process.
        return True
    return True


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a tag's resources, and until when without renewal."""

    tag: str
    machine: str
    pid: int
    #: The holder's process start time (``/proc``), so a reused PID is not mistaken for it.
    started: int | None
    expires: float
    #: True while a reclaimer (this holder) is removing a dead session's resources.
    reclaiming: bool = False

    @classmethod
    def for_this_process(cls, tag: str, ttl: float = DEFAULT_TTL) -> Lease:
        """A lease held by the calling process."""
        pid = os.getpid()
        return cls(tag, this_machine(), pid, _process_start(pid), time.time() + ttl)

    def alive(self, *, now: float | None = None, machine: str | None = None) -> bool:
        """Whether the holder still runs (see the module docstring)."""
        here = this_machine() if machine is None else machine
        if self.machine == here:
            if not _process_alive(self.pid):
                return False
            started = _process_start(self.pid)
            return self.started is None or started is None or started == self.started
        return (time.time() if now is None else now) < self.expires

    def holder(self) -> str:
        """``pid@host``, for messages."""
        return f"{self.pid}@{self.machine.split('/', 1)[0]}"

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, tag: str, text: str) -> Lease | None:
        """The lease stored as ``text``; None when it is not one (then it is treated as dead)."""
        try:
            data = json.loads(text)
            return cls(
                tag,
                str(data["machine"]),
                int(data["pid"]),
                None if data.get("started") is None else int(data["started"]),
                float(data["expires"]),
                bool(data.get("reclaiming", False)),
            )
        except (ValueError, KeyError, TypeError):
            return None


class LeaseStore(Closing):
    """The leases in Redis, through an admin connection.

    ``registry_db`` is the DB of the DB-number registry (the server's last
    one, see :class:`~infra_lib.redis.allocator.RedisDbAllocator`). Use as a
    context manager or call :meth:`close`.
    """

    def __init__(self, config: RedisConfig, registry_db: int, *, key: str = LEASE_KEY) -> None:
        self._config = config
        self._key = key
        self._client: redis.Redis = config.client(registry_db, decode_responses=True)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def put(self, lease: Lease) -> None:
        """Store (take or renew) ``lease``."""
        with self._errors(f"store the lease of {lease.tag}"):
            self._client.hset(self._key, lease.tag, lease.to_json())

    def release(self, tag: str) -> None:
        """Forget ``tag``'s lease; its holder has removed its resources."""
        with self._errors(f"release the lease of {tag}"):
            self._client.hdel(self._key, tag)

    def all(self) -> dict[str, str]:
        """Every stored lease, ``{tag: JSON}``."""
        with self._errors("read the test leases"):
            return cast("dict[str, str]", self._client.hgetall(self._key))

    def take(self, tag: str, seen: str | None, lease: Lease) -> bool:
        """Replace ``tag``'s lease with ``lease`` if it is still ``seen`` (None: absent).

        True when this caller now holds it; false when someone else changed
        it first (a renewal, or another reclaimer).
        """
        with self._errors(f"take over the lease of {tag}"):
            if seen is None:
                return bool(self._client.hsetnx(self._key, tag, lease.to_json()))
            script = self._client.register_script(_TAKE_LUA)
            return bool(script(keys=[self._key], args=[tag, seen, lease.to_json()]))

    def _errors(self, action: str) -> AbstractContextManager[None]:
        return translate_errors(
            self._config.address,
            action,
            username=self._config.username,
            secrets=[self._config.password],
        )


class Heartbeat:
    """Renews a lease in a daemon thread until stopped, every third of its TTL."""

    def __init__(self, store: LeaseStore, lease: Lease, ttl: float = DEFAULT_TTL) -> None:
        self._store, self._lease, self._ttl = store, lease, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease.tag}", daemon=True)

    def start(self) -> None:
        """Start renewing."""
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            try:
                self._store.put(replace(self._lease, expires=time.time() + self._ttl))
            except InfraError as exc:
                # Try again next time; the lease only lapses after a whole TTL.
                _log.warning("could not renew the lease of %s: %s", self._lease.tag, exc)
