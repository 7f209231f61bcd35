"""Admin connections and role reads: the PostgreSQL catalog, read in one place.

Provisioning and backup both connect as the admin role and read roles with
their password verifiers. A managed server hides ``pg_authid`` from its
admin role; both fall back here to ``pg_roles`` (everything but the
verifiers), so that difference is handled once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from infra_lib.errors import ProvisionError, ServiceUnavailable
from infra_lib.postgres.config import PostgresConfig

__all__ = ["RoleRows", "admin_connection", "read_roles", "translate_errors"]

#: One row per role (``pg_authid``'s columns), and whether the verifiers were readable.
RoleRows = tuple[list[dict[str, Any]], bool]


@contextmanager
def admin_connection(
    config: PostgresConfig, dbname: str | None = None, *, autocommit: bool = True, hint: str = ""
) -> Iterator[psycopg.Connection[Any]]:
    """A connection as ``config``'s (admin) role; ServiceUnavailable when it fails.

    ``hint`` ends the message (what to check); the password is never in it.
    """
    kwargs = config.connect_kwargs(autocommit=autocommit)
    if dbname is not None:
        kwargs["dbname"] = dbname
    try:
        conn = psycopg.connect(**kwargs)
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(
            f"cannot connect to PostgreSQL at {config.host}:{config.port} "
            f"(database {kwargs['dbname']!r}) as {config.user!r}: "
            f"{_scrub(str(exc).strip(), [config.password])}" + hint,
            service="postgres",
        ) from exc
    with conn:
        yield conn


@contextmanager
def translate_errors(
    config: PostgresConfig, action: str, *, secrets: Sequence[str | None] = ()
) -> Iterator[None]:
    """Turn psycopg errors raised inside the block into infra_lib's.

    A connection that fails is :class:`ServiceUnavailable`; a statement the
    server refuses is :class:`ProvisionError`. ``action`` says what was
    being done ("create the monitoring role"). The config's password and
    every string in ``secrets`` are blanked out of the message, in case a
    server ever echoes one back.
    """
    hidden = [config.password, *secrets]
    try:
        yield
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(
            f"cannot connect to PostgreSQL at {config.host}:{config.port} as {config.user} "
            f"to {action}: {_scrub(str(exc).strip(), hidden)}",
            service="postgres",
        ) from exc
    except psycopg.Error as exc:
        message = exc.diag.message_primary or str(exc)
        raise ProvisionError(
            f"postgres: could not {action}: {_scrub(message.strip(), hidden)}"
        ) from exc


def _scrub(text: str, secrets: Sequence[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text


def read_roles(conn: psycopg.Connection[Any], names: Sequence[str] | None = None) -> RoleRows:
    """The roles called ``names`` (all but the built-in ``pg_*`` ones by default).

    Each row has ``pg_authid``'s columns plus ``comment`` and
    ``valid_until_text`` (``rolvaliduntil`` as the server prints it;
    ``rolvaliduntil`` itself is NULL for "never", as psycopg cannot load
    ``infinity``). ``rolpassword`` is the stored verifier, or NULL with
    ``False`` when the server does not show them.
    """
    query = sql.SQL(
        "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, "
        "rolreplication, rolbypassrls, rolconnlimit, "
        "NULLIF(rolvaliduntil, 'infinity') AS rolvaliduntil, "
        "rolvaliduntil::text AS valid_until_text, {verifier} AS rolpassword, "
        "shobj_description(oid, 'pg_authid') AS comment FROM {table} WHERE {which} ORDER BY 1"
    )
    which = sql.SQL("rolname NOT LIKE 'pg\\_%'") if names is None else sql.SQL("rolname = ANY(%s)")
    # No parameters at all for the listing: its LIKE pattern holds a '%'.
    params = None if names is None else [list(names)]
    cur = conn.cursor(row_factory=dict_row)
    try:
        # A savepoint, so the refused read leaves a caller's transaction usable.
        with conn.transaction():
            rows = cur.execute(
                query.format(
                    verifier=sql.Identifier("rolpassword"),
                    table=sql.Identifier("pg_authid"),
                    which=which,
                ),
                params,
            ).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        # pg_roles shows '********' for the verifier; NULL says "unknown" plainly.
        rows = cur.execute(
            query.format(verifier=sql.NULL, table=sql.Identifier("pg_roles"), which=which),
            params,
        ).fetchall()
        return rows, False
    return rows, True
