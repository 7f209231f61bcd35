"""Apply the manifest: databases and roles, Redis DBs, per-service env files.

:func:`provision` is what ``inv provision`` (and ``inv up``) run. It is
idempotent: passwords already handed to a service are read back from its env
file and compared with the server, so a second run with nothing changed
reports nothing changed and issues no DDL.
"""

from __future__ import annotations

import fcntl
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from infra_lib.changes import Change
from infra_lib.errors import ConfigError, InfraError, ProvisionError
from infra_lib.manifest import Manifest, ServiceManifest
from infra_lib.stack.envfile import make_private_dirs, parse_env_lines, write_private_file

if TYPE_CHECKING:
    from infra_lib.gateway.layer import GatewayEnv
    from infra_lib.livekit.config import LiveKitConfig
    from infra_lib.observability.otlp import OtlpEndpoints
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.postgres.provisioner import ObjectPlan
    from infra_lib.redis.config import RedisConfig
    from infra_lib.storage.config import S3Config

__all__ = [
    "ProvisionReport",
    "ProvisionRow",
    "ServiceEnv",
    "provision",
    "read_service_env",
    "secret_files_dir",
]

logger = logging.getLogger(__name__)


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


#: The credentials a rotation replaces: each is the service's own on its server.
ROTATED_KEYS = frozenset({"PGPASSWORD", "REDIS_PASSWORD", "S3_SECRET_ACCESS_KEY"})


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
    otlp: OtlpEndpoints | None = None,
    services: Sequence[str] | None = None,
    dry_run: bool = False,
    lock_timeout: float = 300.0,
    on_applied: Callable[[str], None] | None = None,
    gateway: GatewayEnv | None = None,
    secret_files: bool = False,
    rotate: bool = False,
) -> ProvisionReport:
    """Create what the manifest's services need and write their env files.

    ``postgres``, ``redis`` and ``storage`` are admin connections (None
    skips that backend); services that use LiveKit get ``livekit``'s URL and
    API key pair (LiveKit has no per-service keys without a server restart).
    With ``otlp`` (the observability layer is on) every service gets
    ``OTEL_SERVICE_NAME`` and ``OTEL_EXPORTER_OTLP_ENDPOINT``; without it the
    ``OTEL_*`` keys a service's env file has are kept, like a skipped backend's.
    ``gateway`` (when the gateway is on) adds its public URLs to every env
    file. ``secret_files`` also writes each service's secrets as a folder of
    files beside its env file (:func:`secret_files_dir`). ``services`` limits
    the run to some services. With ``dry_run`` nothing is changed and the
    report shows the plan.

    ``rotate`` gives the chosen services new PostgreSQL, Redis and storage
    credentials (:data:`ROTATED_KEYS`) instead of reusing their env files':
    each server then accepts only the new ones. A backend left out of the run
    keeps its credentials. The LiveKit key pair is the stack's, not a
    service's, and is not rotated here.

    Every backend is planned and checked (names, ownership, privileges, Redis
    DB numbers, MinIO users) before the first change, and a dry run makes
    exactly those checks. Env files are written before the credentials in
    them are set on a server, marked incomplete until the run finishes, so a
    run that stops halfway loses no password and the next run finishes it.

    Runs are serialised: a lock file in ``env_dir`` and a PostgreSQL advisory
    lock; a second run waits up to ``lock_timeout`` seconds, then fails
    without changing anything. ``on_applied`` is called with the backend's
    name (``"postgres"``, ``"redis"``, ``"storage"``) after its changes are made.
    """
    chosen = [manifest.service(name) for name in services] if services else list(manifest)

    def run() -> ProvisionReport:
        return _run(
            manifest,
            chosen,
            env_dir,
            postgres,
            redis,
            storage,
            livekit,
            otlp,
            dry_run,
            None if dry_run else on_applied,
            gateway,
            secret_files and not dry_run,
            rotate=rotate,
        )

    if dry_run:
        return run()
    with _serialised(env_dir, postgres, lock_timeout):
        # Read the env files only now: a run that held the lock may have written them.
        return run()


@contextmanager
def _serialised(env_dir: Path, postgres: PostgresConfig | None, timeout: float) -> Iterator[None]:
    # The lock file covers runs on this machine (and runs without PostgreSQL),
    # the advisory lock runs elsewhere that share the server.
    make_private_dirs(env_dir)
    deadline = time.monotonic() + timeout
    with (env_dir / ".provision.lock").open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ProvisionError(
                        f"another `inv provision` has held {env_dir}/.provision.lock for over "
                        f"{timeout:.0f} s; nothing was changed. Wait for it to finish and run "
                        "`inv provision` again."
                    ) from None
                time.sleep(0.2)
        try:
            if postgres is None:
                yield
            else:
                from infra_lib.postgres.provisioner import PostgresProvisioner

                remaining = max(deadline - time.monotonic(), 0.0)
                with PostgresProvisioner(postgres).lock(timeout=remaining):
                    yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(
    manifest: Manifest,
    chosen: list[ServiceManifest],
    env_dir: Path,
    postgres: PostgresConfig | None,
    redis: RedisConfig | None,
    storage: S3Config | None,
    livekit: LiveKitConfig | None,
    otlp: OtlpEndpoints | None,
    dry_run: bool,
    on_applied: Callable[[str], None] | None,
    gateway: GatewayEnv | None = None,
    secret_files: bool = False,
    *,
    rotate: bool = False,
) -> ProvisionReport:
    existing = {s.name: _existing(env_dir, s.name) for s in chosen}
    # The planners reuse a password they find and make one they do not; a
    # rotation hides the old ones from them. Skipped backends still see them.
    reused = (
        {
            name: {k: v for k, v in kv.items() if k not in ROTATED_KEYS}
            for name, kv in existing.items()
        }
        if rotate
        else existing
    )
    values: dict[str, dict[str, str]] = {s.name: {"SERVICE_NAME": s.name} for s in chosen}

    # 1. Plan every backend; each planner raises before anything is changed.
    # A backend left out of this run keeps what the env files say of it:
    # dropping those keys would make the next full run set new passwords.
    stages: list[_Stage] = []
    if postgres is not None:
        stages.append(_plan_postgres(chosen, reused, postgres, values))
    else:
        _keep(chosen, existing, values, "postgres")
    if redis is not None:
        stages.append(_plan_redis(chosen, reused, redis, values))
    else:
        _keep(chosen, existing, values, "redis")
    if storage is not None:
        stages.append(_plan_storage(manifest, chosen, reused, storage, values))
    else:
        _keep(chosen, existing, values, "storage")
    if livekit is None:
        _keep(chosen, existing, values, "livekit")
    else:
        for service in chosen:
            if service.livekit is not None:
                values[service.name].update(
                    {
                        "LIVEKIT_URL": livekit.url,
                        "LIVEKIT_API_KEY": livekit.api_key,
                        "LIVEKIT_API_SECRET": livekit.api_secret,
                    }
                )
    if otlp is None:
        _keep(chosen, existing, values, "otlp")
    else:
        for service in chosen:
            values[service.name].update(otlp.env_for(service))

    if gateway is not None:
        for service in chosen:
            values[service.name].update(gateway.values_for(service))

    before = {s.name: _read_text(env_path(env_dir, s.name)) for s in chosen}
    if dry_run:
        rows = [_planned(row) for stage in stages for row in stage.rows]
        for service in chosen:
            path = env_path(env_dir, service.name)
            if before[service.name] == _render_env(service, values[service.name]):
                rows.append(ProvisionRow(service.name, "env file", str(path), Change.UNCHANGED))
            else:
                rows.append(
                    ProvisionRow(service.name, "env file", str(path), Change.PLANNED, "would write")
                )
        planned_envs = tuple(
            ServiceEnv(s.name, env_path(env_dir, s.name), values[s.name]) for s in chosen
        )
        return ProvisionReport(tuple(rows), True, planned_envs)

    # 2. Hand out every credential before a server accepts it.
    pending = [s for s in chosen if before[s.name] != _render_env(s, values[s.name])]
    # A service's secret files, once asked for, follow every change of its env
    # file, and get new credentials before any server does, like the env file.
    with_files = [s for s in chosen if secret_files or secret_files_dir(env_dir, s.name).is_dir()]
    file_rows = {s.name: _write_secret_files(env_dir, s.name, values[s.name]) for s in with_files}
    for service in pending:
        text = _render_env(service, values[service.name], complete=False)
        write_private_file(env_path(env_dir, service.name), text)

    # 3. Apply, backend by backend.
    rows = []
    done: list[str] = []
    for stage in stages:
        try:
            rows += stage.apply(done)
        except InfraError as exc:
            raise ProvisionError(_stopped(stage.backend, exc, done, env_dir, pending)) from exc
        if on_applied is not None:
            on_applied(stage.backend)

    # 4. The env files as the servers now are.
    env_files: list[ServiceEnv] = []
    for service in chosen:
        path = env_path(env_dir, service.name)
        text = _render_env(service, values[service.name])
        if before[service.name] == text:
            rows.append(ProvisionRow(service.name, "env file", str(path), Change.UNCHANGED))
        else:
            if _read_text(path) != text:
                write_private_file(path, text)
            change = Change.CREATED if before[service.name] is None else Change.CHANGED
            rows.append(ProvisionRow(service.name, "env file", str(path), change, "mode 0600"))
        env_files.append(ServiceEnv(service.name, path, values[service.name]))
        rows += file_rows.get(service.name, [])
    return ProvisionReport(tuple(rows), False, tuple(env_files))


def secret_files_dir(env_dir: Path, service: str) -> Path:
    """``env/<project>/<service>.secrets/``: one file per secret of the service's env file."""
    return env_dir / f"{service}.secrets"


def _write_secret_files(env_dir: Path, service: str, values: dict[str, str]) -> list[ProvisionRow]:
    """The service's secrets as files named after their variables, in step with its env file.

    For a platform that mounts secrets as files (Kubernetes, Compose
    ``secrets:``): :meth:`ServiceSettings.load` reads the folder with
    ``secrets_dir=``. A file whose variable the env file no longer has is
    removed, so the folder never holds a revoked credential.
    """
    directory = secret_files_dir(env_dir, service)
    make_private_dirs(directory)
    wanted = {k: v for k, v in values.items() if k in SECRET_ENV_KEYS and v}
    changed: list[str] = []
    for key, value in sorted(wanted.items()):
        path = directory / key
        if _read_text(path) != value + "\n":
            write_private_file(path, value + "\n")
            changed.append(key)
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.name not in wanted and path.name in SECRET_ENV_KEYS:
            path.unlink()
            changed.append(f"-{path.name}")
    change = Change.CHANGED if changed else Change.UNCHANGED
    detail = f"{len(wanted)} files, mode 0600" if changed else ""
    return [ProvisionRow(service, "secret files", str(directory), change, detail)]


#: The env-file keys each backend writes, by prefix.
_BACKEND_KEYS: dict[str, tuple[str, ...]] = {
    "postgres": ("DATABASE_URL", "PG", "JDBC_DATABASE_"),
    "redis": ("REDIS_",),
    "storage": ("S3_",),
    "livekit": ("LIVEKIT_",),
    # Written for every service while the observability layer is on.
    "otlp": ("OTEL_",),
}


def _keep(
    chosen: list[ServiceManifest],
    existing: dict[str, dict[str, str]],
    values: dict[str, dict[str, str]],
    backend: str,
) -> None:
    """Carry a skipped backend's keys over from each service's current env file."""
    prefixes = _BACKEND_KEYS[backend]
    for service in chosen:
        if backend != "otlp" and getattr(service, backend) is None:
            continue
        for key, value in existing[service.name].items():
            if key.startswith(prefixes):
                values[service.name].setdefault(key, value)


@dataclass(slots=True)
class _Stage:
    """One backend's checked plan: rows to show, and how to carry it out."""

    backend: str
    rows: list[ProvisionRow]
    #: Makes the changes, appends what now exists to its argument, returns the rows.
    apply: Callable[[list[str]], list[ProvisionRow]]


def _planned(row: ProvisionRow) -> ProvisionRow:
    return row if row.change == Change.UNCHANGED else replace(row, change=Change.PLANNED)


def _stopped(
    backend: str, exc: InfraError, done: list[str], env_dir: Path, pending: list[ServiceManifest]
) -> str:
    made = "; ".join(done) or "nothing"
    files = ", ".join(f"{s.name}.env" for s in pending)
    kept = (
        f"The env files {files} in {env_dir} already hold every credential set so far and "
        "are marked incomplete. "
        if pending
        else ""
    )
    return (
        f"provisioning stopped while applying the {backend} changes: {exc}\n"
        f"Done before it stopped: {made}. {kept}Once the server is back, run `inv provision` "
        "again: it finishes the job."
    )


def _where(service: str, field: str) -> str:
    return f"service {service!r}, field {field!r}: "


def _blame(service: str, field: str, exc: ConfigError | ProvisionError) -> InfraError:
    """``exc`` again, its message prefixed with the manifest service and field."""
    return type(exc)(_where(service, field) + str(exc))


def _plan_postgres(
    chosen: list[ServiceManifest],
    existing: dict[str, dict[str, str]],
    config: PostgresConfig,
    values: dict[str, dict[str, str]],
) -> _Stage:
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
        if login.sslrootcert:
            # libpq, pgx and pgjdbc all read this name; the URLs carry it too.
            values[service.name]["PGSSLROOTCERT"] = login.sslrootcert
            values[service.name]["JDBC_DATABASE_URL"] += f"&sslrootcert={login.sslrootcert}"
    provisioner = PostgresProvisioner(config)
    plan = provisioner.plan(roles, databases, harden=True)
    rows = [
        ProvisionRow(
            obj.service or "(server)", f"postgres {obj.kind}", obj.name, obj.change, obj.summary
        )
        for obj in plan.objects
    ]

    def apply(done: list[str]) -> list[ProvisionRow]:
        def applied(obj: ObjectPlan) -> None:
            verb = str(obj.change)
            done.append(f"postgres {obj.kind} {obj.name} {verb}")

        provisioner.apply(plan, on_applied=applied)
        return rows

    return _Stage("postgres", rows, apply)


def _plan_redis(
    chosen: list[ServiceManifest],
    existing: dict[str, dict[str, str]],
    config: RedisConfig,
    values: dict[str, dict[str, str]],
) -> _Stage:
    from infra_lib.redis.acl import ensure_acl_user
    from infra_lib.redis.allocator import RedisDbAllocator

    # Explicit numbers first, so an "auto" service never takes a number the
    # manifest gives to another one.
    ordered = sorted(
        ((s, s.redis) for s in chosen if s.redis is not None),
        key=lambda pair: pair[1].db == "auto",
    )
    if not ordered:
        return _Stage("redis", [], lambda done: [])
    rows: list[ProvisionRow] = []
    wanted: list[tuple[ServiceManifest, int | None, str | None, str | None, str]] = []
    planned: dict[str, int] = {}
    with RedisDbAllocator(config) as allocator:
        for service, needs in ordered:
            explicit = None if needs.db == "auto" else needs.db
            try:
                preview = allocator.preview(service.name, db=explicit, pending=planned)
            except (ConfigError, ProvisionError) as exc:
                raise _blame(service.name, "redis.db", exc) from exc
            planned[service.name] = preview.db
            rows.append(
                ProvisionRow(
                    service.name,
                    "redis db",
                    str(preview.db),
                    Change.CREATED if preview.created else Change.UNCHANGED,
                    needs.purpose,
                )
            )
            username: str | None = None
            password: str | None = config.password
            prefix = needs.prefix_for(service.name)
            if needs.acl:
                username = service.name
                password = _password(existing[service.name], "REDIS_PASSWORD")
                try:
                    acl = ensure_acl_user(
                        config, username, password, key_prefix=prefix, dry_run=True
                    )
                except (ConfigError, ProvisionError) as exc:
                    raise _blame(service.name, "redis.acl", exc) from exc
                rows.append(
                    ProvisionRow(
                        service.name,
                        "redis acl user",
                        username,
                        acl,
                    )
                )
                values[service.name]["REDIS_USERNAME"] = username
                values[service.name]["REDIS_PASSWORD"] = password
            values[service.name]["REDIS_URL"] = config.url(
                preview.db, username=username, password=password
            )
            values[service.name]["REDIS_DB"] = str(preview.db)
            values[service.name]["REDIS_KEY_PREFIX"] = prefix
            if config.tls_ca_file:
                # No URL parameter for it that redis-py, go-redis and Lettuce share.
                values[service.name]["REDIS_TLS_CA_FILE"] = config.tls_ca_file
            wanted.append((service, explicit, username, password, prefix))

    def apply(done: list[str]) -> list[ProvisionRow]:
        out = list(rows)
        with RedisDbAllocator(config) as allocator:
            for service, explicit, username, password, prefix in wanted:
                allocation = allocator.allocate(service.name, db=explicit)
                if allocation.created:
                    done.append(f"redis db {allocation.db} claimed for {service.name}")
                if allocation.db != planned[service.name]:
                    # Someone outside this run took the planned number meanwhile.
                    values[service.name]["REDIS_DB"] = str(allocation.db)
                    values[service.name]["REDIS_URL"] = config.url(
                        allocation.db, username=username, password=password
                    )
                    out = [
                        replace(r, name=str(allocation.db))
                        if r.service == service.name and r.resource == "redis db"
                        else r
                        for r in out
                    ]
                if (
                    username is not None
                    and password is not None
                    and str(ensure_acl_user(config, username, password, key_prefix=prefix))
                    != "unchanged"
                ):
                    done.append(f"redis acl user {username} set")
        return out

    return _Stage("redis", rows, apply)


def _plan_storage(
    manifest: Manifest,
    chosen: list[ServiceManifest],
    existing: dict[str, dict[str, str]],
    config: S3Config,
    values: dict[str, dict[str, str]],
) -> _Stage:
    from infra_lib.storage.buckets import BucketManager
    from infra_lib.storage.credentials import ensure_service_user

    users = [
        (s, s.storage.prefixes) for s in chosen if s.storage is not None and s.storage.prefixes
    ]
    if not users:
        return _Stage("storage", [], lambda done: [])
    bucket = manifest.project.bucket_name
    # The bucket's public prefixes come from every service, not only the chosen ones.
    public = [p for s in manifest if s.storage is not None for p in s.storage.public_read]
    manager = BucketManager(config)
    try:
        report = manager.ensure_bucket(bucket, public_read_prefixes=public, dry_run=True)
    except (ConfigError, ProvisionError) as exc:
        raise type(exc)(f"project, field 'project.bucket': {exc}") from exc
    rows = [
        ProvisionRow(
            "(project)",
            "bucket",
            bucket,
            _change(report.changed, report["bucket"].value == "created"),
            str(report),
        )
    ]
    secrets_by_service: dict[str, str] = {}
    for service, own in users:
        prefixes = list(own)
        # MinIO caps secret keys at 40 characters: 30 random bytes, URL-safe.
        secret = _password(existing[service.name], "S3_SECRET_ACCESS_KEY", nbytes=30)
        secrets_by_service[service.name] = secret
        try:
            creds = ensure_service_user(
                config,
                service.name,
                bucket=bucket,
                prefixes=prefixes,
                secret_key=secret,
                dry_run=True,
            )
        except (ConfigError, ProvisionError) as exc:
            raise _blame(service.name, "storage.prefixes", exc) from exc
        change = creds.change.value
        rows.append(
            ProvisionRow(
                service.name,
                "storage user",
                creds.access_key,
                _change(change != "unchanged", change == "created"),
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

    def apply(done: list[str]) -> list[ProvisionRow]:
        if manager.ensure_bucket(bucket, public_read_prefixes=public)["bucket"].value == "created":
            done.append(f"bucket {bucket} created")
        for service, own in users:
            creds = ensure_service_user(
                config,
                service.name,
                bucket=bucket,
                prefixes=list(own),
                secret_key=secrets_by_service[service.name],
            )
            if creds.change.value != "unchanged":
                done.append(f"storage user {creds.access_key} {creds.change.value}")
        return rows

    return _Stage("storage", rows, apply)


def _change(changed: bool, created: bool) -> Change:
    if not changed:
        return Change.UNCHANGED
    return Change.CREATED if created else Change.CHANGED


def _read_text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


#: First line of an env file whose provisioning run has not finished.
INCOMPLETE_MARK = "# INCOMPLETE: `inv provision` stopped before finishing; run it again."


def _render_env(service: ServiceManifest, values: dict[str, str], *, complete: bool = True) -> str:
    header = [
        f"# Settings of {service.name}, written by `inv provision` from the manifest.",
        "# Holds secrets: keep it out of version control (mode 0600).",
    ]
    if not complete:
        header.insert(0, INCOMPLETE_MARK)
    return "\n".join([*header, *(f"{k}={v}" for k, v in values.items())]) + "\n"
