"""Least-privilege credentials of the exporters, and MinIO's metrics token.

- PostgreSQL: the login role ``infra_monitor``, a member of ``pg_monitor``
  (statistics and settings, no table of anyone), with ``CONNECT`` on the
  admin database only. Service databases revoke ``CONNECT`` from ``PUBLIC``,
  so it cannot even connect to them.
- Redis: the ACL user ``infra-monitor`` with no keys, no channels and only
  the commands redis_exporter runs (``INFO``, ``SLOWLOG``, ``LATENCY``, ...).
  ``CONFIG GET`` is left out: it would show ``requirepass`` and
  ``masterauth``; the memory limit is in ``INFO`` anyway.
- MinIO: a bearer token for ``/minio/v2/metrics/cluster``, the JWT that
  ``mc admin prometheus generate`` makes (HS512 with the root secret key,
  ``sub`` the root access key, ``iss`` "prometheus"). MinIO's alternative,
  ``MINIO_PROMETHEUS_AUTH_TYPE=public``, would open the metrics to anyone
  who reaches the port, published on the host.
- Grafana (optional profile): the password of its ``admin``, read from a
  Compose secret; viewers need none.

Passwords are generated once and kept in ``env/<project>/observability/
secrets.env`` (mode 0600), which the task runner passes to Compose; Compose
copies them into the exporters as secrets. They are written before the
server learns them, so a run that stops halfway loses nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infra_lib.changes import Change
from infra_lib.errors import ConfigError
from infra_lib.observability.layer import LayerPaths
from infra_lib.stack.envfile import parse_env_lines, write_private_file

if TYPE_CHECKING:
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.redis.config import RedisConfig

__all__ = [
    "POSTGRES_MONITOR_ROLE",
    "REDIS_MONITOR_COMMANDS",
    "REDIS_MONITOR_USER",
    "MonitorCredentials",
    "ensure_credentials",
    "ensure_postgres_monitor",
    "ensure_redis_monitor",
    "minio_metrics_token",
]

logger = logging.getLogger(__name__)

#: The PostgreSQL login role of postgres-exporter (``DATA_SOURCE_USER``).
POSTGRES_MONITOR_ROLE = "infra_monitor"
#: The Redis ACL user of redis-exporter (``REDIS_USER``).
REDIS_MONITOR_USER = "infra-monitor"
#: Where redis-exporter reaches Redis; the key of its JSON password file.
REDIS_EXPORTER_ADDR = "redis://redis:6379"

#: What redis_exporter sends on a scrape, and nothing else. ``-@all`` first:
#: no data command, no ``CONFIG``, no ``KEYS``/``SCAN``, no pub/sub.
REDIS_MONITOR_COMMANDS: tuple[str, ...] = (
    "-@all",
    "+auth",
    "+hello",
    "+ping",
    "+info",
    "+client|setname",
    "+slowlog|get",
    "+slowlog|len",
    "+latency|latest",
    "+latency|histogram",
)

#: What an ``ensure_*`` function did (or, with ``dry_run``, would do).


_COMMENT = "infra-lib monitoring role (observability layer): pg_monitor, no data"

# How long MinIO's token is valid: `mc admin prometheus generate` uses 100 years.
_TOKEN_LIFETIME = 100 * 365 * 24 * 3600

_KEYS = (
    "INFRA_MONITOR_POSTGRES_PASSWORD",
    "INFRA_MONITOR_REDIS_PASSWORD",
    "INFRA_MONITOR_REDIS_PASSWORD_FILE",
    "INFRA_MONITOR_MINIO_TOKEN",
    "INFRA_GRAFANA_ADMIN_PASSWORD",
)


@dataclass(frozen=True, slots=True)
class MonitorCredentials:
    """What the exporters and the metrics store log in with (never printed)."""

    postgres_password: str = field(repr=False)
    redis_password: str = field(repr=False)
    minio_token: str = field(repr=False)
    #: Grafana's ``admin`` (the optional ``grafana`` profile).
    grafana_admin_password: str = field(repr=False, default="")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def minio_metrics_token(access_key: str, secret_key: str, *, now: float | None = None) -> str:
    """The bearer token MinIO accepts on its Prometheus endpoints.

    The same JWT as ``mc admin prometheus generate``: HS512 signed with
    ``secret_key``, ``sub`` the access key, ``iss`` "prometheus", expiring
    in 100 years (MinIO checks signature, subject and expiry).
    """
    if not access_key or not secret_key:
        raise ConfigError("MinIO's metrics token needs MINIO_ROOT_USER and MINIO_ROOT_PASSWORD.")
    issued = int(time.time() if now is None else now)
    header = _b64(json.dumps({"alg": "HS512", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"exp": issued + _TOKEN_LIFETIME, "sub": access_key, "iss": "prometheus"}
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{body}".encode("ascii")
    signature = hmac.new(secret_key.encode(), signing_input, hashlib.sha512).digest()
    return f"{header}.{body}.{_b64(signature)}"


def _token_valid(token: str, access_key: str, secret_key: str) -> bool:
    """Whether ``token`` is signed with this key pair and has not expired."""
    try:
        header, body, signature = token.split(".")
        expected = hmac.new(
            secret_key.encode(), f"{header}.{body}".encode("ascii"), hashlib.sha512
        ).digest()
        if not hmac.compare_digest(_b64(expected), signature):
            return False
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, UnicodeDecodeError):
        return False
    # Renewed a year before it would expire.
    exp = claims.get("exp")
    return (
        isinstance(claims, dict)
        and claims.get("sub") == access_key
        and isinstance(exp, int)
        and exp > time.time() + 365 * 24 * 3600
    )


def ensure_credentials(
    paths: LayerPaths, *, minio_access_key: str, minio_secret_key: str, save: bool = True
) -> MonitorCredentials:
    """Read the monitoring credentials, generating what is missing, and save them.

    Passwords already handed out are kept, so a second run changes nothing;
    the MinIO token is made again only when the root credentials changed.
    The file is rewritten (atomically, mode 0600) only when its text changes,
    and never with ``save=False`` (a dry run).
    """
    path = paths.secrets_env
    old_text = path.read_text(encoding="utf-8") if path.is_file() else ""
    old = parse_env_lines(old_text)
    postgres = old.get("INFRA_MONITOR_POSTGRES_PASSWORD") or secrets.token_urlsafe(32)
    redis = old.get("INFRA_MONITOR_REDIS_PASSWORD") or secrets.token_urlsafe(32)
    grafana = old.get("INFRA_GRAFANA_ADMIN_PASSWORD") or secrets.token_urlsafe(24)
    token = old.get("INFRA_MONITOR_MINIO_TOKEN", "")
    if not _token_valid(token, minio_access_key, minio_secret_key):
        token = minio_metrics_token(minio_access_key, minio_secret_key)
    # redis_exporter's password file maps each address to its password;
    # single quotes keep Compose from reading the JSON's quotes.
    password_map = json.dumps({REDIS_EXPORTER_ADDR: redis}, separators=(",", ":"))
    values = dict(zip(_KEYS, (postgres, redis, f"'{password_map}'", token, grafana), strict=True))
    text = (
        "# Credentials of the observability layer's exporters, scraper and Grafana.\n"
        "# Written by `inv up` / `inv provision`; private (mode 0600). Do not edit.\n"
        + "".join(f"{key}={value}\n" for key, value in values.items())
    )
    if save and text != old_text:
        paths.make_dirs()
        write_private_file(path, text)
    return MonitorCredentials(postgres, redis, token, grafana)


def ensure_postgres_monitor(
    config: PostgresConfig, password: str, *, database: str, dry_run: bool = False
) -> Change:
    """Make ``infra_monitor`` a ``pg_monitor`` login role with ``password``.

    It may connect to ``database`` (the admin database, where the exporter
    reads the server-wide statistics) and nowhere else a service database
    allows. Returns what changed.
    """
    from psycopg import sql

    from infra_lib.postgres.catalog import admin_connection, translate_errors
    from infra_lib.postgres.scram import scram_matches

    role = sql.Identifier(POSTGRES_MONITOR_ROLE)
    action = f"set up the monitoring role {POSTGRES_MONITOR_ROLE!r}"
    with translate_errors(config, action, secrets=[password]), admin_connection(config) as conn:
        row: Any = conn.execute(
            "SELECT rolpassword, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, "
            "rolreplication, rolbypassrls, "
            "pg_has_role(oid, 'pg_monitor', 'MEMBER') AS monitor, "
            "has_database_privilege(oid, %s, 'CONNECT') AS can_connect "
            "FROM pg_authid WHERE rolname = %s",
            (database, POSTGRES_MONITOR_ROLE),
        ).fetchone()
        steps: list[sql.Composed] = []
        verifier = conn.pgconn.encrypt_password(
            password.encode(), POSTGRES_MONITOR_ROLE.encode(), b"scram-sha-256"
        ).decode("ascii")
        attributes = sql.SQL(
            "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
            "INHERIT PASSWORD {}"
        ).format(sql.Literal(verifier))
        if row is None:
            steps.append(sql.SQL("CREATE ROLE {} {}").format(role, attributes))
            steps.append(sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(_COMMENT)))
        elif not scram_matches(row[0], password) or not row[1] or any(row[2:7]):
            steps.append(sql.SQL("ALTER ROLE {} {}").format(role, attributes))
        if row is None or not row[7]:
            steps.append(sql.SQL("GRANT pg_monitor TO {}").format(role))
        if row is None or not row[8]:
            steps.append(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role)
            )
        if dry_run or not steps:
            return (
                Change.UNCHANGED
                if not steps
                else (Change.CREATED if row is None else Change.CHANGED)
            )
        with conn.transaction():
            for step in steps:
                conn.execute(step)
    logger.info("PostgreSQL monitoring role %s %s", POSTGRES_MONITOR_ROLE, "ready")
    return Change.CREATED if row is None else Change.CHANGED


def ensure_redis_monitor(config: RedisConfig, password: str, *, dry_run: bool = False) -> Change:
    """Make ``infra-monitor`` an ACL user with no keys, no channels, exporter commands only."""
    from infra_lib.redis.acl import ensure_acl_user

    return ensure_acl_user(
        config,
        REDIS_MONITOR_USER,
        password,
        commands=REDIS_MONITOR_COMMANDS,
        key_patterns=(),
        channels=(),
        dry_run=dry_run,
    )
