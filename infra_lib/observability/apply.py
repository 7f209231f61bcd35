"""Bring the layer's generated files and credentials in line, for ``inv up``/``provision``.

:func:`prepare` runs before Compose starts the layer: it writes the
monitoring credentials (handed to Compose as secrets) and the scrape config,
the latter checked by VictoriaMetrics itself first. :func:`apply_credentials`
runs once PostgreSQL and Redis are healthy and sets the same credentials on
them; :func:`reload` makes a running metrics store read a changed config.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infra_lib.changes import Change
from infra_lib.manifest import Manifest
from infra_lib.observability.credentials import (
    POSTGRES_MONITOR_ROLE,
    REDIS_MONITOR_USER,
    MonitorCredentials,
    ensure_credentials,
    ensure_postgres_monitor,
    ensure_redis_monitor,
)
from infra_lib.observability.layer import LayerPaths
from infra_lib.observability.scrape import (
    build_scrape_jobs,
    render_scrape_config,
    write_scrape_config,
)
from infra_lib.provisioning import ProvisionRow
from infra_lib.stack.envfile import write_private_file

if TYPE_CHECKING:
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.redis.config import RedisConfig
    from infra_lib.stack.compose import Stack

__all__ = ["Prepared", "apply_credentials", "prepare", "reload"]

logger = logging.getLogger(__name__)

_SERVICE = "(observability)"


@dataclass(frozen=True, slots=True)
class Prepared:
    """What :func:`prepare` wrote (or, for a dry run, would write)."""

    credentials: MonitorCredentials
    scrape_changed: bool
    rows: tuple[ProvisionRow, ...]
    #: The credentials file was written with other values than before:
    #: containers made with the old ones must be made again (Compose copies
    #: secrets only when it creates a container).
    credentials_changed: bool = False


def _check(stack: Stack, paths: LayerPaths, text: str) -> None:
    """Run ``text`` through -dryRun in a scratch folder of its own.

    One folder per run: concurrent runs (`inv provision` in parallel, or
    `up` beside `provision`) would otherwise delete each other's candidate
    while its check runs. mkdtemp makes it 0700.
    """
    from infra_lib.observability.store import check_scrape_config

    scratch = Path(tempfile.mkdtemp(prefix="check-", dir=paths.root))
    try:
        candidate = scratch / "scrape.yml"
        write_private_file(candidate, text)
        check_scrape_config(stack, candidate)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def prepare(stack: Stack, manifest: Manifest, env_dir: Path, *, dry_run: bool = False) -> Prepared:
    """Write the credentials and the checked scrape config for ``stack``.

    The config is built from ``manifest`` and the stack's settings, rendered,
    and run through VictoriaMetrics' ``-dryRun`` in a scratch folder; only a
    config that passes replaces the one the server reads. With ``dry_run``
    the config is checked but nothing is replaced.
    """
    paths = LayerPaths(env_dir)
    settings = stack.settings
    had_secrets = paths.secrets_env.is_file()
    before = paths.secrets_env.read_bytes() if had_secrets else None
    credentials = ensure_credentials(
        paths,
        minio_access_key=settings.required("minio_root_user"),
        minio_secret_key=settings.secret("minio_root_password"),
        save=not dry_run,
    )
    text = render_scrape_config(settings, build_scrape_jobs(manifest))
    paths.make_dirs()
    current = paths.scrape_file
    # A file equal to the one in place passed -dryRun when it was written;
    # checking it again costs a container run on every `inv up`.
    changed = not current.is_file() or current.read_text(encoding="utf-8") != text
    if changed:
        _check(stack, paths, text)
    if not dry_run:
        changed = write_scrape_config(paths, text)
    after = paths.secrets_env.read_bytes() if paths.secrets_env.is_file() else None
    secrets_change = Change.UNCHANGED
    if not had_secrets:
        secrets_change = Change.PLANNED if dry_run else Change.CREATED
    elif before != after:
        secrets_change = Change.CHANGED
    rows = (
        ProvisionRow(
            _SERVICE,
            "credentials",
            str(paths.secrets_env),
            secrets_change,
            "mode 0600; Compose secrets of the exporters",
        ),
        ProvisionRow(
            _SERVICE,
            "scrape config",
            str(paths.scrape_file),
            (Change.PLANNED if dry_run else Change.CHANGED) if changed else Change.UNCHANGED,
            "passed victoria-metrics -dryRun",
        ),
    )
    return Prepared(credentials, changed, rows, not dry_run and before != after)


def apply_credentials(
    credentials: MonitorCredentials,
    *,
    postgres: PostgresConfig | None,
    redis: RedisConfig | None,
    postgres_db: str = "postgres",
    dry_run: bool = False,
) -> list[ProvisionRow]:
    """Create or correct the monitoring role and ACL user (None skips a backend)."""
    rows: list[ProvisionRow] = []
    if postgres is not None:
        change = ensure_postgres_monitor(
            postgres, credentials.postgres_password, database=postgres_db, dry_run=dry_run
        )
        rows.append(
            ProvisionRow(
                _SERVICE,
                "postgres role",
                POSTGRES_MONITOR_ROLE,
                Change.PLANNED if dry_run and change != Change.UNCHANGED else change,
                f"pg_monitor, CONNECT on {postgres_db} only",
            )
        )
    if redis is not None:
        change = ensure_redis_monitor(redis, credentials.redis_password, dry_run=dry_run)
        rows.append(
            ProvisionRow(
                _SERVICE,
                "redis acl user",
                REDIS_MONITOR_USER,
                Change.PLANNED if dry_run and change != Change.UNCHANGED else change,
                "no keys, no channels, INFO/SLOWLOG/LATENCY only",
            )
        )
    return rows


def reload(stack: Stack) -> bool:
    """Ask a running metrics store to re-read its scrape config; false if it is not running."""
    from infra_lib.errors import ServiceUnavailable
    from infra_lib.observability.store import MetricsStore

    store = MetricsStore.from_stack(stack.settings)
    try:
        store.reload()
    except ServiceUnavailable as exc:
        logger.debug("metrics store not reloaded: %s", exc)
        return False
    return True
