"""The manifest (``infra.toml``): which services exist and what each needs.

It is the single place a team edits to add a service. Loading validates it
completely and reports the first problems with file, service and field, so
nothing is provisioned from a manifest that is half wrong.

Example::

    [project]
    name = "collab"

    [services.board-service]
    postgres = { database = "board_db", role = "board_user" }
    redis = { db = 1, purpose = "cache, rate limiting" }
    storage = { prefixes = ["boards/"] }
    metrics = { port = 8000, path = "/metrics", upstream = "host" }
    http = { port = 8000, routes = ["/api/boards"], health = "/health" }
    seed = { postgres = ["seeds/board/*.sql"], redis = "seeds/board/redis.json" }
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infra_lib.errors import ConfigError, ManifestError
from infra_lib.names import validate_pg_identifier, validate_service_name
from infra_lib.redis.keys import default_key_prefix, overlapping, validate_key_prefix

#: Objects every PostgreSQL server has; a service taking one over would get the
#: admin's database or a template every new database is copied from. (``pg_*``
#: and ``public`` are refused for any identifier by ``validate_pg_identifier``.)
RESERVED_DATABASES = frozenset({"postgres", "template0", "template1"})
RESERVED_ROLES = frozenset({"postgres"})

__all__ = [
    "HttpEndpoint",
    "LiveKitNeeds",
    "Manifest",
    "MetricsEndpoint",
    "PostgresNeeds",
    "RedisNeeds",
    "SeedData",
    "ServiceManifest",
    "StorageNeeds",
    "load_manifest",
    "parse_manifest",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PostgresNeeds(_Strict):
    """A database owned by a login role of its own."""

    database: str
    role: str
    #: Concurrent connections allowed for the role (-1: no limit).
    connection_limit: Annotated[int, Field(ge=-1)] = -1
    #: When the role's password stops working (None: never).
    valid_until: datetime | None = None
    encoding: str = "UTF8"
    #: Collation and character classification; "C" exists on every server.
    locale: str = "C"
    template: str = "template0"

    @field_validator("database", "role", "template")
    @classmethod
    def _identifier(cls, value: str) -> str:
        try:
            return validate_pg_identifier(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("database")
    @classmethod
    def _not_a_system_database(cls, value: str) -> str:
        if value in RESERVED_DATABASES:
            raise ValueError(
                f"database {value!r} belongs to the server itself, not to a service; "
                "give the service a database of its own (e.g. 'board_db')"
            )
        return value

    @field_validator("role")
    @classmethod
    def _not_a_system_role(cls, value: str) -> str:
        if value in RESERVED_ROLES:
            raise ValueError(
                f"role {value!r} is the server's administrator, not a service role; "
                "give the service a role of its own (e.g. 'board_user')"
            )
        return value


class RedisNeeds(_Strict):
    """A Redis DB number: fixed (``db = 3``) or allocated (``db = "auto"``).

    ``key_prefix`` is the start of every key and channel name the service
    uses (``REDIS_KEY_PREFIX`` in its env file); its ACL user can reach
    nothing else, in any DB. Default ``"<service>:"``; see :meth:`prefix_for`.
    """

    db: int | Literal["auto"] = "auto"
    purpose: str = ""
    #: Create a Redis ACL user for the service with its own password.
    acl: bool = False
    #: Keys and channels of the service start with this (``board:``).
    key_prefix: str | None = None

    @field_validator("key_prefix")
    @classmethod
    def _key_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_key_prefix(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    def prefix_for(self, service: str) -> str:
        """The key prefix of ``service``: ``key_prefix`` or ``"<service>:"``."""
        return self.key_prefix or default_key_prefix(service)

    @field_validator("db", mode="plain")
    @classmethod
    def _db(cls, value: object) -> int | Literal["auto"]:
        if value == "auto":
            return "auto"
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise ValueError(f'must be a DB number >= 0 or "auto", not {value!r}')


class StorageNeeds(_Strict):
    """Key prefixes in the shared bucket that the service may use."""

    prefixes: tuple[str, ...] = ()
    #: Prefixes anonymous clients may read (e.g. public avatars). Private by default.
    public_read: tuple[str, ...] = ()

    @field_validator("prefixes", "public_read")
    @classmethod
    def _prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from infra_lib.storage.keys import check_prefix

        for prefix in value:
            segments = prefix.rstrip("/").split("/")
            if (
                not prefix.endswith("/")
                or prefix.startswith("/")
                or any(s in ("", ".", "..") for s in segments)
            ):
                raise ValueError(
                    f"prefix {prefix!r} must look like 'name/' or 'a/b/': no leading '/', "
                    "no empty, '.' or '..' segments, and a trailing '/'"
                )
            # The prefix becomes part of IAM and bucket policies: only a safe set.
            try:
                check_prefix(prefix, what="prefix")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _public_inside_own(self) -> StorageNeeds:
        for public in self.public_read:
            if not any(public.startswith(own) for own in self.prefixes):
                raise ValueError(
                    f"public_read prefix {public!r} is not inside the service's prefixes"
                )
        return self


class LiveKitNeeds(_Strict):
    """Access to LiveKit: room management and join tokens."""

    rooms: bool = True


#: A Compose service name (what another container reaches the service as).
_COMPOSE_SERVICE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


def _check_upstream(value: str) -> str:
    if value != "host" and not _COMPOSE_SERVICE.fullmatch(value):
        raise ValueError(
            f'upstream {value!r} must be "host" (a process on this machine) or a '
            "Compose service name (lowercase letters, digits, '-', '_', '.')"
        )
    return value


class MetricsEndpoint(_Strict):
    """Where the observability layer scrapes a service's Prometheus metrics.

    ``upstream = "host"`` is a process on the developer's machine, reached
    from the metrics store's container as ``host.docker.internal``; any other
    value is the Compose service name of a container on the stack's networks.
    """

    port: Annotated[int, Field(ge=1, le=65535)]
    path: str = "/metrics"
    upstream: str = "host"
    scheme: Literal["http", "https"] = "http"
    #: How often to scrape (None: the layer's METRICS_SCRAPE_INTERVAL).
    interval: str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(ch.isspace() or ch in "?#" for ch in value):
            raise ValueError(
                f"path {value!r} must start with '/' and hold no spaces, '?' or '#' "
                "(e.g. '/metrics' or '/actuator/prometheus')"
            )
        return value

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str) -> str:
        return _check_upstream(value)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[1-9][0-9]*(ms|s|m|h)", value):
            raise ValueError(f"interval {value!r} must be a duration such as '15s' or '1m'")
        return value


#: A route path: '/'-separated segments of URL-safe characters, nothing that
#: a gateway config or a URL would read as syntax ('?', '#', spaces, quotes, ';').
_ROUTE_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")

#: Paths the gateway answers itself; no service may route them.
GATEWAY_RESERVED_PATHS = ("/health",)


def _check_route(value: str) -> str:
    if value == "/":
        return value
    segments = value.split("/")[1:] if value.startswith("/") else []
    if (
        not segments
        or value.endswith("/")
        or any(s in (".", "..") or not _ROUTE_SEGMENT.fullmatch(s) for s in segments)
    ):
        raise ValueError(
            f"route {value!r} must be '/' or look like '/api/boards': a leading '/', no "
            "trailing '/', segments of letters, digits, '.', '_', '~', '-' (no '.' or '..')"
        )
    return value


def routes_overlap(a: str, b: str) -> bool:
    """Whether one route is the other or lies under it, segment-wise.

    ``/`` is the catch-all and overlaps nothing but itself: the gateway sends
    a request there only when no other route matches.
    """
    if a == "/" or b == "/":
        return a == b
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


class HttpEndpoint(_Strict):
    """What the gateway routes to a service (``compose/gateway.yaml``).

    ``routes`` are path prefixes proxied as HTTP, ``websockets`` as
    WebSocket upgrades; each matches itself and everything under it
    (``/api/boards`` takes ``/api/boards/7`` but not ``/api/boardsX``).
    ``upstream = "host"`` is a process on the developer's machine, reached
    from the gateway's container as ``host.docker.internal`` (it must listen
    on an address containers reach, not only 127.0.0.1); any other value is
    the Compose service name of a container on the stack's networks.
    ``health`` is the upstream's own path that ``inv routes`` checks.
    """

    port: Annotated[int, Field(ge=1, le=65535)]
    routes: tuple[str, ...] = ()
    websockets: tuple[str, ...] = ()
    health: str | None = "/health"
    upstream: str = "host"

    @field_validator("routes", "websockets")
    @classmethod
    def _routes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for route in value:
            _check_route(route)
            for reserved in GATEWAY_RESERVED_PATHS:
                if routes_overlap(route, reserved):
                    raise ValueError(
                        f"route {route!r} overlaps {reserved!r}, which the gateway answers "
                        "itself; route the service under another path"
                    )
        return value

    @field_validator("health")
    @classmethod
    def _health(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("/") or any(ch.isspace() or ch in "?#'\";" for ch in value):
            raise ValueError(
                f"health {value!r} must be a path starting with '/' with no spaces, quotes, "
                "';', '?' or '#' (e.g. '/health' or '/actuator/health')"
            )
        return value

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str) -> str:
        return _check_upstream(value)

    @model_validator(mode="after")
    def _some_route(self) -> HttpEndpoint:
        if not self.routes and not self.websockets:
            raise ValueError("declares no routes and no websockets; give it at least one path")
        paths = [*self.routes, *self.websockets]
        for i, a in enumerate(paths):
            for b in paths[i + 1 :]:
                if routes_overlap(a, b):
                    raise ValueError(f"route {a!r} overlaps {b!r} of the same service")
        return self


def _check_seed_path(value: str) -> str:
    if not value or Path(value).is_absolute() or ".." in Path(value).parts:
        raise ValueError(
            f"seed path {value!r} must be relative to the manifest's folder, with no '..' "
            "(e.g. 'seeds/board/data.sql')"
        )
    return value


class SeedData(_Strict):
    """Fixture data ``inv seed`` loads into a service (and ``inv reset`` after emptying it).

    Paths are relative to the manifest's folder. ``postgres`` holds SQL files
    or glob patterns, run in name order as the service's own role; ``redis``
    a JSON file of keys; ``storage`` a folder whose files become objects, the
    path under the folder being the key (so it starts with one of the
    service's prefixes).
    """

    postgres: tuple[str, ...] = ()
    redis: str | None = None
    storage: str | None = None

    @field_validator("postgres", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("postgres")
    @classmethod
    def _sql_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_seed_path(v) for v in value)

    @field_validator("redis", "storage")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and any(c in value for c in "*?["):
            raise ValueError(f"{value!r}: one path here, not a pattern")
        return None if value is None else _check_seed_path(value)


class ServiceManifest(_Strict):
    """What one service needs; absent sections mean "does not use it"."""

    name: str
    description: str = ""
    postgres: PostgresNeeds | None = None
    redis: RedisNeeds | None = None
    storage: StorageNeeds | None = None
    livekit: LiveKitNeeds | None = None
    metrics: MetricsEndpoint | None = None
    http: HttpEndpoint | None = None
    seed: SeedData | None = None

    @model_validator(mode="after")
    def _seed_has_a_target(self) -> ServiceManifest:
        seed = self.seed
        if seed is None:
            return self
        for part, given in (
            ("postgres", bool(seed.postgres)),
            ("redis", seed.redis is not None),
            ("storage", seed.storage is not None),
        ):
            if given and getattr(self, part) is None:
                raise ValueError(
                    f"seed.{part} is given but the service has no {part} section to load it into"
                )
        return self


class ProjectSection(_Strict):
    """Project-wide settings."""

    name: str = "infra"
    #: The shared bucket; default "<project>-dev-files".
    bucket: str | None = None

    @property
    def bucket_name(self) -> str:
        """The shared bucket's name."""
        return self.bucket or f"{self.name}-dev-files"


class Manifest(_Strict):
    """A validated manifest."""

    path: Path | None = None
    project: ProjectSection = ProjectSection()
    services: tuple[ServiceManifest, ...] = ()

    def service(self, name: str) -> ServiceManifest:
        """The service called ``name``; ConfigError naming the known ones otherwise."""
        for service in self.services:
            if service.name == name:
                return service
        known = ", ".join(s.name for s in self.services) or "(none)"
        raise ConfigError(f"no service {name!r} in {self.path or 'the manifest'}; known: {known}")

    def __iter__(self) -> Iterator[ServiceManifest]:  # type: ignore[override]
        return iter(self.services)


def _where(path: Path | str, loc: tuple[int | str, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "services":
        field = ".".join(str(p) for p in loc[2:]) or "(the service table)"
        return f"{path}: service {loc[1]!r}, field {field!r}"
    return f"{path}: field {'.'.join(str(p) for p in loc)!r}"


def parse_manifest(data: dict[str, Any], *, path: Path | str = "<manifest>") -> Manifest:
    """Validate manifest data (as parsed from TOML) into a :class:`Manifest`."""
    problems: list[str] = []
    unknown = set(data) - {"project", "services"}
    problems += [f"{path}: unknown top-level key {key!r}" for key in sorted(unknown)]
    raw_services = data.get("services", {})
    if not isinstance(raw_services, dict):
        raise ManifestError(f"{path}: [services] must be a table of service tables")

    try:
        project = ProjectSection.model_validate(data.get("project", {}))
    except ValidationError as exc:
        problems += [f"{_where(path, ('project', *e['loc']))}: {e['msg']}" for e in exc.errors()]
        project = ProjectSection()

    services: list[ServiceManifest] = []
    for name, body in raw_services.items():
        try:
            validate_service_name(name)
        except ConfigError as exc:
            problems.append(f"{path}: {exc}")
            continue
        if not isinstance(body, dict):
            problems.append(f"{path}: service {name!r} must be a table")
            continue
        try:
            services.append(ServiceManifest.model_validate({"name": name, **body}))
        except ValidationError as exc:
            for err in exc.errors():
                problems.append(f"{_where(path, ('services', name, *err['loc']))}: {err['msg']}")

    problems += _cross_checks(services, path)
    problems += _redis_prefix_checks(services, path)
    problems += _route_checks(services, path)
    if problems:
        raise ManifestError("invalid manifest:\n  " + "\n  ".join(problems))
    return Manifest(
        path=Path(path) if path != "<manifest>" else None, project=project, services=tuple(services)
    )


def _cross_checks(services: list[ServiceManifest], path: Path | str) -> list[str]:
    problems: list[str] = []
    seen: dict[tuple[str, str | int], str] = {}
    for service in services:
        claims: list[tuple[str, str | int, str]] = []
        if service.postgres is not None:
            claims.append(("database", service.postgres.database, "postgres.database"))
            claims.append(("role", service.postgres.role, "postgres.role"))
        if service.redis is not None and service.redis.db != "auto":
            claims.append(("redis db", service.redis.db, "redis.db"))
        for kind, value, field in claims:
            holder = seen.setdefault((kind, value), service.name)
            if holder != service.name:
                problems.append(
                    f"{path}: service {service.name!r}, field {field!r}: {kind} {value!r} "
                    f"is already claimed by service {holder!r}"
                )
    prefixes: dict[str, str] = {}
    for service in services:
        for prefix in service.storage.prefixes if service.storage else ():
            for other, holder in prefixes.items():
                if holder != service.name and (
                    prefix.startswith(other) or other.startswith(prefix)
                ):
                    problems.append(
                        f"{path}: service {service.name!r}, field 'storage.prefixes': {prefix!r} "
                        f"overlaps {other!r} of service {holder!r}"
                    )
            prefixes[prefix] = service.name
    return problems


def _redis_prefix_checks(services: list[ServiceManifest], path: Path | str) -> list[str]:
    """Key prefixes must not overlap: one service's pattern would match the other's keys."""
    problems: list[str] = []
    claimed: dict[str, str] = {}
    for service in services:
        if service.redis is None:
            continue
        prefix = service.redis.prefix_for(service.name)
        try:
            # A default prefix is checked too: a service named "infra" would get "infra:".
            validate_key_prefix(prefix)
        except ConfigError as exc:
            problems.append(f"{path}: service {service.name!r}, field 'redis.key_prefix': {exc}")
            continue
        for other, holder in claimed.items():
            if overlapping(prefix, other):
                problems.append(
                    f"{path}: service {service.name!r}, field 'redis.key_prefix': {prefix!r} "
                    f"overlaps {other!r} of service {holder!r}; give each service a prefix no "
                    "other one starts with"
                )
        claimed[prefix] = service.name
    return problems


def _route_checks(services: list[ServiceManifest], path: Path | str) -> list[str]:
    """No two services may claim the same path or one under the other's."""
    problems: list[str] = []
    claimed: list[tuple[str, str]] = []
    for service in services:
        if service.http is None:
            continue
        for field, routes in (
            ("http.routes", service.http.routes),
            ("http.websockets", service.http.websockets),
        ):
            for route in routes:
                for other, holder in claimed:
                    if holder != service.name and routes_overlap(route, other):
                        problems.append(
                            f"{path}: service {service.name!r}, field {field!r}: route "
                            f"{route!r} overlaps {other!r} of service {holder!r}; the gateway "
                            "could not tell which of them a request is for"
                        )
        claimed += [(r, service.name) for r in (*service.http.routes, *service.http.websockets)]
    return problems


def load_manifest(path: Path) -> Manifest:
    """Read and validate the manifest at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            f"{path} does not exist; it declares the services to provision (see infra.toml "
            "in the repository for the reference team)"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from exc
    return parse_manifest(data, path=path)
