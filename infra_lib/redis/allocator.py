"""One Redis DB number per service, recorded in Redis itself.

The registry is a hash (service name -> DB number) in a DB reserved for it:
by default the server's last one, which is therefore never handed out. A
claim reads the hash, picks or checks a number and writes it inside one Lua
script, which Redis runs without interleaving other commands, so concurrent
provisioning runs (two CI jobs, a developer and a test suite) cannot hand one
number to two services. Releases are a single ``HDEL``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, cast

import redis
import redis.exceptions

from infra_lib._closing import Closing
from infra_lib.errors import (
    AllocationConflict,
    CapacityExhausted,
    ConfigError,
    ProvisionError,
)
from infra_lib.names import validate_service_name
from infra_lib.redis.config import translate_errors

if TYPE_CHECKING:
    from redis.commands.core import Script

    from infra_lib.redis.config import RedisConfig

__all__ = [
    "DEFAULT_REGISTRY_KEY",
    "Allocation",
    "RedisDbAllocator",
    "validate_service_name",
]

_log = logging.getLogger(__name__)

DEFAULT_REGISTRY_KEY = "infra:redis-db-registry"


# Far beyond any real server; bounds the SELECT probe.
_MAX_PROBED_DATABASES = 1 << 20

_T = TypeVar("_T")

# KEYS[1] registry hash (service -> DB number)
# ARGV[1] service, ARGV[2] requested number or "" for the lowest free one,
# ARGV[3] number of databases, ARGV[4] the reserved registry DB.
# Returns {status, value}: created/existing -> the number, mismatch -> the
# service's current number, conflict -> the holder, full -> how many are held.
_ALLOCATE_LUA = """
local key = KEYS[1]
local service = ARGV[1]
local requested = ARGV[2]
local databases = tonumber(ARGV[3])
local reserved = tonumber(ARGV[4])

local current = redis.call('HGET', key, service)
if current then
  if requested ~= '' and tonumber(requested) ~= tonumber(current) then
    return {'mismatch', current}
  end
  return {'existing', current}
end

local entries = redis.call('HGETALL', key)
local used = {}
for i = 1, #entries, 2 do
  local n = tonumber(entries[i + 1])
  if n then
    used[n] = entries[i]
  end
end

if requested ~= '' then
  local n = tonumber(requested)
  if used[n] then
    return {'conflict', used[n]}
  end
  redis.call('HSET', key, service, tostring(n))
  return {'created', tostring(n)}
end

for n = 0, databases - 1 do
  if n ~= reserved and not used[n] then
    redis.call('HSET', key, service, tostring(n))
    return {'created', tostring(n)}
  end
end
return {'full', tostring(#entries / 2)}
"""


@dataclass(frozen=True, slots=True)
class Allocation:
    """The DB number a service holds; ``created`` is true when this call claimed it."""

    service: str
    db: int
    created: bool


def _simulate(
    service: str, db: int | None, claims: Mapping[str, int], databases: int, registry_db: int
) -> tuple[str, str]:
    """The answer the allocation script would give, computed from ``claims``."""
    current = claims.get(service)
    if current is not None:
        if db is not None and db != current:
            return "mismatch", str(current)
        return "existing", str(current)
    used = {number: name for name, number in claims.items()}
    if db is not None:
        if db in used:
            return "conflict", used[db]
        return "created", str(db)
    for number in range(databases):
        if number != registry_db and number not in used:
            return "created", str(number)
    return "full", str(len(claims))


class RedisDbAllocator(Closing):
    """Hands out Redis DB numbers to services: stable, idempotent, atomic.

    ``registry_db`` defaults to the server's last DB (``databases - 1``).
    ``databases`` is read with ``CONFIG GET databases``; where ``CONFIG`` is
    not permitted (managed Redis such as ElastiCache renames or forbids it)
    it is found by probing ``SELECT n`` on a throwaway client, and where
    even that is refused pass ``databases=`` explicitly (an explicit value is
    trusted as given). Every caller that
    shares a server must agree on ``registry_key`` and ``registry_db``, or
    they keep separate registries.

    The registry lives in Redis memory like any key. Under ``allkeys-lru``
    (the compose stack's policy) it can be evicted when memory runs short.
    Provisioning claims every number the manifest states explicitly on each
    run, which rebuilds the registry; that is why numbers a service depends
    on belong in the manifest, and automatic numbers suit short-lived users
    such as test suites.

    The allocator owns one connection pool; use it as a context manager or
    call :meth:`close`.
    """

    def __init__(
        self,
        config: RedisConfig,
        *,
        registry_key: str = DEFAULT_REGISTRY_KEY,
        registry_db: int | None = None,
        databases: int | None = None,
    ) -> None:
        if not registry_key:
            raise ConfigError("registry_key must not be empty.")
        if databases is not None and (isinstance(databases, bool) or databases < 1):
            raise ConfigError(f"databases must be a positive integer, not {databases!r}.")
        if registry_db is not None and (isinstance(registry_db, bool) or registry_db < 0):
            raise ConfigError(f"registry_db must be a non-negative integer, not {registry_db!r}.")
        self._config = config
        self._registry_key = registry_key
        self._registry_db_arg = registry_db
        self._databases_arg = databases
        self._layout: tuple[int, int] | None = None
        self._client: redis.Redis | None = None
        self._script: Script | None = None

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Close the registry connection pool; the allocator reconnects if used again."""
        if self._client is not None:
            self._client.close()
            self._client = None
            self._script = None

    # -- layout ------------------------------------------------------------

    @property
    def registry_key(self) -> str:
        return self._registry_key

    @property
    def databases(self) -> int:
        """How many DBs the server has (asked once, then remembered)."""
        return self._resolve_layout()[0]

    @property
    def registry_db(self) -> int:
        """The DB that holds the registry; never allocated to a service."""
        return self._resolve_layout()[1]

    def _resolve_layout(self) -> tuple[int, int]:
        if self._layout is None:
            databases = self._databases_arg
            if databases is None:
                databases = self._call(self._detect_databases)
            if databases < 2:
                raise ConfigError(
                    f"Redis at {self._config.address} offers {databases} database(s); one DB per "
                    "service needs at least 2 (one holds the registry). Cluster mode has "
                    "only DB 0: use a standalone server or per-service key prefixes."
                )
            registry_db = databases - 1 if self._registry_db_arg is None else self._registry_db_arg
            if registry_db >= databases:
                raise ConfigError(
                    f"registry_db {registry_db} is out of range: the server has {databases} "
                    f"databases (0-{databases - 1})."
                )
            self._layout = (databases, registry_db)
        return self._layout

    def _detect_databases(self) -> int:
        probe = self._config.client(0, decode_responses=True)
        try:
            try:
                reply = probe.config_get("databases")
            except redis.exceptions.ResponseError as exc:
                # NoPermissionError (ACL) or "unknown command" (renamed on
                # managed services) both leave SELECT as the way to find out.
                _log.debug("CONFIG GET databases refused (%s); probing with SELECT", exc)
            else:
                value = reply.get("databases")
                if value is not None:
                    return int(value)
            return self._probe_databases(probe)
        finally:
            probe.close()

    def _probe_databases(self, probe: redis.Redis) -> int:
        """The number of DBs, found by asking SELECT for ever higher indexes.

        ``probe`` is thrown away afterwards: its connections are left in
        whatever DB the last SELECT chose.
        """

        def selectable(index: int) -> bool:
            try:
                probe.select(index)
            except redis.exceptions.NoPermissionError as exc:
                raise ConfigError(
                    f"Redis at {self._config.address} lets this user run neither CONFIG GET "
                    "nor SELECT; pass databases= to RedisDbAllocator."
                ) from exc
            except redis.exceptions.ResponseError:
                return False
            return True

        if not selectable(0):
            raise ConfigError(
                f"Redis at {self._config.address} refuses SELECT 0; pass databases= to "
                "RedisDbAllocator."
            )
        # Doubling, then bisection; `low` is selectable, `high` is not.
        low, high = 0, 1
        while high < _MAX_PROBED_DATABASES and selectable(high):
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            if selectable(middle):
                low = middle
            else:
                high = middle
        return low + 1

    # -- the API -----------------------------------------------------------

    def allocate(self, service: str, *, db: int | None = None) -> Allocation:
        """Give ``service`` a DB number, or return the one it already holds.

        With ``db`` the number is claimed explicitly: :class:`AllocationConflict`
        when another service holds it or this service holds a different one.
        Without, the lowest free number is taken. :class:`CapacityExhausted`
        when none is free; :class:`ConfigError` for an invalid name or number.
        """
        validate_service_name(service)
        databases, registry_db = self._resolve_layout()
        if db is not None:
            self._check_number(db, databases, registry_db)
        requested = "" if db is None else str(db)

        def run() -> list[str]:
            reply = self._allocate_script()(
                keys=[self._registry_key],
                args=[service, requested, databases, registry_db],
                client=self._registry_client(),
            )
            return [str(part) for part in reply]

        status, value = self._call(run)
        return self._result(service, db, status, value, databases, registry_db)

    def preview(
        self, service: str, *, db: int | None = None, pending: Mapping[str, int] | None = None
    ) -> Allocation:
        """What :meth:`allocate` would return for ``service``, claiming nothing.

        Raises exactly what :meth:`allocate` would raise now. ``pending`` are
        numbers the caller is about to claim for other services; they count
        as taken, so a whole manifest can be checked before its first claim.
        The answer holds while nobody else claims numbers in between.
        """
        validate_service_name(service)
        databases, registry_db = self._resolve_layout()
        if db is not None:
            self._check_number(db, databases, registry_db)
        claims = {**self.list(), **(pending or {})}
        status, value = _simulate(service, db, claims, databases, registry_db)
        return self._result(service, db, status, value, databases, registry_db)

    def _result(
        self,
        service: str,
        db: int | None,
        status: str,
        value: str,
        databases: int,
        registry_db: int,
    ) -> Allocation:
        where = self._config.address
        if status == "created" or status == "existing":
            number = int(value)
            if status == "existing" and (number >= databases or number == registry_db):
                raise ProvisionError(
                    f"the registry {self._registry_key!r} says service {service!r} holds Redis "
                    f"DB {number}, but the server at {where} has {databases} databases and "
                    f"DB {registry_db} is the registry's. Raise REDIS_DATABASES in .env, or "
                    f"release {service!r} and allocate it again."
                )
            _log.debug("Redis DB %d for service %s (%s)", number, service, status)
            return Allocation(service, number, status == "created")
        if status == "mismatch":
            raise AllocationConflict(
                f"service {service!r} already holds Redis DB {value}, so it cannot take DB "
                f"{db}. To move it, copy its data, then release it "
                f"(RedisDbAllocator.release({service!r})) and allocate DB {db}; or keep DB "
                f"{value} in the manifest."
            )
        if status == "conflict":
            raise AllocationConflict(
                f"Redis DB {db} is already allocated to service {value!r}; service {service!r} "
                "cannot take it. Pick another number in the manifest, or release "
                f"{value!r} first if it no longer uses Redis."
            )
        if status == "full":
            allocatable = databases - 1
            _log.debug("registry %s is full (%s entries)", self._registry_key, value)
            raise CapacityExhausted(
                f"no Redis DB number is free for service {service!r}: the server at {where} "
                f"has {databases} databases, DB {registry_db} holds the registry and the other "
                f"{allocatable} are allocated. Raise "
                "REDIS_DATABASES in .env and restart Redis (`inv up`), or release services "
                "that no longer use Redis."
            )
        raise ProvisionError(f"the allocation script answered {status!r}, which is not expected.")

    def release(self, service: str) -> bool:
        """Forget ``service``'s number; true if it held one. Its data stays in the DB."""
        validate_service_name(service)
        self._resolve_layout()

        def run() -> bool:
            return bool(self._registry_client().hdel(self._registry_key, service))

        released = self._call(run)
        if released:
            _log.debug("released the Redis DB of service %s", service)
        return released

    def list(self) -> dict[str, int]:
        """Every allocation, ``{service: db}``, ordered by DB number."""
        self._resolve_layout()

        def run() -> dict[str, int]:
            # decode_responses=True: names and numbers arrive as str.
            raw = cast("dict[str, str]", self._registry_client().hgetall(self._registry_key))
            bad = sorted(name for name, number in raw.items() if not number.isdigit())
            if bad:
                raise ProvisionError(
                    f"the DB registry {self._registry_key!r} holds entries that are not DB "
                    f"numbers for {', '.join(map(repr, bad))}; release them and allocate again."
                )
            pairs = sorted(((name, int(n)) for name, n in raw.items()), key=lambda p: (p[1], p[0]))
            return dict(pairs)

        return self._call(run)

    # -- plumbing ----------------------------------------------------------

    def _check_number(self, db: int, databases: int, registry_db: int) -> None:
        if isinstance(db, bool) or not isinstance(db, int) or not 0 <= db < databases:
            raise ConfigError(
                f"Redis DB {db!r} is out of range: the server has {databases} databases "
                f"(0-{databases - 1}). Raise REDIS_DATABASES in .env to have more."
            )
        if db == registry_db:
            raise ConfigError(
                f"Redis DB {db} is reserved for the allocation registry; pick another number."
            )

    def _registry_client(self) -> redis.Redis:
        if self._client is None:
            self._client = self._config.client(self._resolve_layout()[1], decode_responses=True)
        return self._client

    def _allocate_script(self) -> Script:
        if self._script is None:
            self._script = self._registry_client().register_script(_ALLOCATE_LUA)
        return self._script

    def _call(self, operation: Callable[[], _T]) -> _T:
        with translate_errors(
            self._config.address,
            f"use the DB registry {self._registry_key!r}",
            username=self._config.username,
            secrets=[self._config.password],
        ):
            return operation()
