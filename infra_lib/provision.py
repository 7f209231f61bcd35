"""Apply the manifest: databases and roles, Redis DBs, per-service env files.

:func:`provision` is what ``inv provision`` (and ``inv up``) run. It is
idempotent: passwords already handed to a service are read back from its env
file and compared with the server, so a second run with nothing changed
reports nothing changed and issues no DDL.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from infra_lib.errors import ConfigError
from infra_lib.manifest import Manifest, ServiceManifest
from infra_lib.stack.envfile import parse_env_lines, write_private_file

if TYPE_CHECKING:
    from infra_lib.livekit.config import LiveKitConfig
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.postgres.provisioner import PostgresPlan
    from infra_lib.redis.allocator import RedisDbAllocator
    from infra_lib.redis.config import RedisConfig
    from infra_lib.storage.config import S3Config

__all__ = ["ProvisionReport", "ProvisionRow", "ServiceEnv", "provision", "read_service_env"]

logger = logging.getLogger(__name__)

Change = Literal["create", "change", "unchanged", "planned"]

#: Keys of a service env file whose values are secrets.
SECRET_ENV_KEYS = frozenset(
    {
        "DATABASE_URL",
        "PGPASSWORD",
        "REDIS_URL",
        "REDIS_PASSWORD",
        "JDBC_DATABASE_PASSWORD",
        "S3_SECRET_ACCESS_KEY",
        "LIVEKIT_API_SECRET",
    }
)


@dataclass(frozen=True, slots=True)
class ProvisionRow:
    """One line of the provisioning report."""

    service: str
    resource: str
    name: str
    change: Change
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ServiceEnv:
    """The settings handed to one service, as ``KEY=value`` pairs."""

    service: str
    path: Path
    values: dict[str, str] = field(repr=False)

    def masked(self) -> dict[str, str]:
        """The values with every secret replaced by a fixed mask."""
        from infra_lib.stack.envfile import mask

        return {k: (mask(v) if k in SECRET_ENV_KEYS else v) for k, v in self.values.items()}


@dataclass(frozen=True, slots=True)
class ProvisionReport:
    """What :func:`provision` did (or, for a dry run, would do)."""

    rows: tuple[ProvisionRow, ...]
    dry_run: bool
    env_files: tuple[ServiceEnv, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether anything was (or would be) created or changed."""
        return any(r.change != "unchanged" for r in self.rows)


def env_path(env_dir: Path, service: str) -> Path:
    """Where the env file of ``service`` lives."""
    return env_dir / f"{service}.env"


def read_service_env(env_dir: Path, service: str) -> ServiceEnv:
    """The settings last written for ``service``; ConfigError when there are none."""
    path = env_path(env_dir, service)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; run `inv provision` to create it")
    return ServiceEnv(service, path, parse_env_lines(path.read_text(encoding="utf-8")))


def _existing(env_dir: Path, service: str) -> dict[str, str]:
    path = env_path(env_dir, service)
    return parse_env_lines(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _password(existing: dict[str, str], key: str, *, nbytes: int = 32) -> str:
    # Reuse what the service already has, so provisioning never rotates by surprise.
    return existing.get(key) or secrets.token_urlsafe(nbytes)


def provision(
    manifest: Manifest,
    *,
    env_dir: Path,
    postgres: PostgresConfig | None,
    redis: RedisConfig | None,
    storage: S3Config | None = None,
    livekit: LiveKitConfig | None = None,
    services: Sequence[str] | None = None,
    dry_run: bool = False,
) -> ProvisionReport:
    """Create what the manifest's services need and write their env files.

    ``postgres``, ``redis`` and ``storage`` are admin connections (None
    skips that backend); services that use LiveKit get ``livekit``'s URL and
    API key pair (LiveKit has no per-service keys without a server restart).
    ``services`` limits the run to some services. With ``dry_run`` nothing
    is changed and the report shows the plan.
    """
    chosen = [manifest.service(name) for name in services] if services else list(manifest)
    existing = {s.name: _existing(env_dir, s.name) for s in chosen}
    rows: list[ProvisionRow] = []
    values: dict[str, dict[str, str]] = {s.name: {"SERVICE_NAME": s.name} for s in chosen}

    if postgres is not None:
        plan = _provision_postgres(chosen, existing, postgres, values, dry_run)
        for obj in plan.objects:
            change: Change = "planned" if dry_run and obj.change != "unchanged" else obj.change
            rows.append(
                ProvisionRow(obj.service, f"postgres {obj.kind}", obj.name, change, obj.summary)
            )

    if redis is not None:
        rows += _provision_redis(chosen, existing, redis, values, dry_run)

    if storage is not None:
        rows += _provision_storage(manifest, chosen, existing, storage, values, dry_run)

    if livekit is not None:
        for service in chosen:
            if service.livekit is not None:
                values[service.name].update(
                    {
                        "LIVEKIT_URL": livekit.url,
                        "LIVEKIT_API_KEY": livekit.api_key,
                        "LIVEKIT_API_SECRET": livekit.api_secret,
                    }
                )

    env_files: list[ServiceEnv] = []
    for service in chosen:
        path = env_path(env_dir, service.name)
        text = _render_env(service, values[service.name])
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            rows.append(ProvisionRow(service.name, "env file", str(path), "unchanged"))
        elif dry_run:
            rows.append(ProvisionRow(service.name, "env file", str(path), "planned", "would write"))
        else:
            env_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private_file(path, text)
            change = "create" if current is None else "change"
            rows.append(ProvisionRow(service.name, "env file", str(path), change, "mode 0600"))
        env_files.append(ServiceEnv(service.name, path, values[service.name]))
    return ProvisionReport(tuple(rows), dry_run, tuple(env_files))


def _provision_postgres(
    chosen: list[ServiceManifest],
    existing: dict[str, dict[str, str]],
    config: PostgresConfig,
    values: dict[str, dict[str, str]],
    dry_run: bool,
) -> PostgresPlan:
    from infra_lib.postgres.provisioner import DatabaseSpec, PostgresProvisioner, RoleSpec

    roles: list[RoleSpec] = []
    databases: list[DatabaseSpec] = []
    for service in chosen:
        needs = service.postgres
        if needs is None:
            continue
        password = _password(existing[service.name], "PGPASSWORD")
        roles.append(
            RoleSpec(
                needs.role,
                password,
                service=service.name,
                connection_limit=needs.connection_limit,
                valid_until=needs.valid_until,
            )
        )
        databases.append(
            DatabaseSpec(
                needs.database,
                needs.role,
                service=service.name,
                encoding=needs.encoding,
                locale=needs.locale,
                template=needs.template,
            )
        )
        login = config.with_login(needs.role, password, needs.database)
        values[service.name].update(
            {
                "DATABASE_URL": login.url(),
                "PGHOST": login.host,
                "PGPORT": str(login.port),
                "PGDATABASE": needs.database,
                "PGUSER": needs.role,
                "PGPASSWORD": password,
                "PGSSLMODE": login.sslmode,
                # Java services take the URL and the credentials apart.
                "JDBC_DATABASE_URL": (
                    f"jdbc:postgresql://{login.host}:{login.port}/{needs.database}"
                    f"?sslmode={login.sslmode}"
                ),
                "JDBC_DATABASE_USERNAME": needs.role,
                "JDBC_DATABASE_PASSWORD": password,
            }
        )
    return PostgresProvisioner(config).ensure(roles, databases, dry_run=dry_run)


def _provision_redis(
    chosen: list[ServiceManifest],
    existing: dict[str, dict[str, str]],
    config: RedisConfig,
    values: dict[str, dict[str, str]],
    dry_run: bool,
) -> list[ProvisionRow]:
    from infra_lib.redis.acl import ensure_acl_user
    from infra_lib.redis.allocator import RedisDbAllocator

    with RedisDbAllocator(config) as allocator:
        return _allocate_all(chosen, existing, config, values, dry_run, allocator, ensure_acl_user)


def _allocate_all(
    chosen: list[ServiceManifest],
    existing: dict[str, dict[str, str]],
    config: RedisConfig,
    values: dict[str, dict[str, str]],
    dry_run: bool,
    allocator: RedisDbAllocator,
    ensure_acl_user: Callable[..., object],
) -> list[ProvisionRow]:
    current = allocator.list() if dry_run else {}
    rows: list[ProvisionRow] = []
    # Explicit numbers first, so an "auto" service never takes a number the
    # manifest gives to another one.
    ordered = sorted(
        (s for s in chosen if s.redis is not None),
        key=lambda s: s.redis is not None and s.redis.db == "auto",
    )
    for service in ordered:
        needs = service.redis
        if needs is None:
            continue
        explicit = None if needs.db == "auto" else needs.db
        if dry_run:
            db = current.get(service.name, explicit)
            if db is not None and current.get(service.name) == db:
                rows.append(ProvisionRow(service.name, "redis db", str(db), "unchanged"))
            else:
                shown = "next free" if db is None else str(db)
                rows.append(
                    ProvisionRow(service.name, "redis db", shown, "planned", "would allocate")
                )
            if db is None:
                continue
        else:
            allocation = allocator.allocate(service.name, db=explicit)
            db = allocation.db
            rows.append(
                ProvisionRow(
                    service.name,
                    "redis db",
                    str(db),
                    "create" if allocation.created else "unchanged",
                    needs.purpose,
                )
            )
        username: str | None = None
        password: str | None = config.password
        if needs.acl:
            username = service.name
            password = _password(existing[service.name], "REDIS_PASSWORD")
            acl_change = str(ensure_acl_user(config, username, password, dry_run=dry_run))
            change: Change = "unchanged"
            if acl_change != "unchanged":
                change = (
                    "planned" if dry_run else ("create" if acl_change == "created" else "change")
                )
            rows.append(ProvisionRow(service.name, "redis acl user", username, change))
            values[service.name]["REDIS_USERNAME"] = username
            values[service.name]["REDIS_PASSWORD"] = password
        values[service.name]["REDIS_URL"] = config.url(db, username=username, password=password)
        values[service.name]["REDIS_DB"] = str(db)
    return rows


def _provision_storage(
    manifest: Manifest,
    chosen: list[ServiceManifest],
    existing: dict[str, dict[str, str]],
    config: S3Config,
    values: dict[str, dict[str, str]],
    dry_run: bool,
) -> list[ProvisionRow]:
    from infra_lib.storage.buckets import BucketManager
    from infra_lib.storage.credentials import ensure_service_user

    users = [
        (s, s.storage.prefixes) for s in chosen if s.storage is not None and s.storage.prefixes
    ]
    if not users:
        return []
    bucket = manifest.project.bucket_name
    # The bucket's public prefixes come from every service, not only the chosen ones.
    public = [p for s in manifest if s.storage is not None for p in s.storage.public_read]
    report = BucketManager(config).ensure_bucket(
        bucket, public_read_prefixes=public, dry_run=dry_run
    )
    rows = [
        ProvisionRow(
            "(project)",
            "bucket",
            bucket,
            _change(report.changed, report["bucket"].value == "created", dry_run),
            str(report),
        )
    ]
    for service, own in users:
        prefixes = list(own)
        # MinIO caps secret keys at 40 characters: 30 random bytes, URL-safe.
        secret = _password(existing[service.name], "S3_SECRET_ACCESS_KEY", nbytes=30)
        creds = ensure_service_user(
            config,
            service.name,
            bucket=bucket,
            prefixes=prefixes,
            secret_key=secret,
            dry_run=dry_run,
        )
        change = creds.change.value
        rows.append(
            ProvisionRow(
                service.name,
                "storage user",
                creds.access_key,
                _change(change != "unchanged", change == "created", dry_run),
                "prefixes " + ", ".join(prefixes),
            )
        )
        values[service.name].update(
            {
                "S3_ENDPOINT": config.endpoint,
                "S3_PUBLIC_ENDPOINT": config.public_endpoint or config.endpoint,
                "S3_REGION": config.region,
                "S3_FORCE_PATH_STYLE": "true" if config.addressing == "path" else "false",
                "S3_BUCKET": bucket,
                "S3_PREFIXES": ",".join(prefixes),
                "S3_ACCESS_KEY_ID": creds.access_key,
                "S3_SECRET_ACCESS_KEY": secret,
            }
        )
    return rows


def _change(changed: bool, created: bool, dry_run: bool) -> Change:
    if not changed:
        return "unchanged"
    if dry_run:
        return "planned"
    return "create" if created else "change"


def _render_env(service: ServiceManifest, values: dict[str, str]) -> str:
    header = [
        f"# Settings of {service.name}, written by `inv provision` from the manifest.",
        "# Holds secrets: keep it out of version control (mode 0600).",
    ]
    return "\n".join([*header, *(f"{k}={v}" for k, v in values.items())]) + "\n"
