"""Roles a PostgreSQL restore recreates from an archive's ``roles.json``.

A restore creates only the roles its data needs and the server lacks, and
it reads them as data (never the ``pg_dumpall`` SQL, which would run as
the admin role whatever it says). ``roles.json`` is as untrusted as the
rest of the archive, so before any role is created every record is parsed
against a schema and checked against a policy:

- a recreated role gets only LOGIN/INHERIT, a connection limit, an expiry,
  a comment and a password *verifier* (SCRAM or md5): never SUPERUSER,
  CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS. The roles this project
  provisions have none of them; a record that asks for one is refused;
- a recreated role is made a member only of roles created in the same
  restore, or of existing roles that hold none of those attributes and are
  not predefined (``pg_*``): membership of a superuser role is superuser
  (``SET ROLE``), and ``pg_execute_server_program`` runs programs on the
  server.

A refusal (:class:`RestoreRefused`) names the role and the field and
changes nothing; a privileged role that really belongs in the data can be
created by hand before restoring, and is then left as it is.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import psycopg
from psycopg import sql
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from infra_lib.backup.archive import DatasetEntry, parse_json
from infra_lib.backup.details import pg_name, role_name
from infra_lib.errors import BackupCorrupt, BackupError, RestoreRefused

__all__ = ["PRIVILEGED_ATTRIBUTES", "ROLES_FILE", "RolesFile", "ensure_roles", "load_roles"]

logger = logging.getLogger(__name__)

ROLES_FILE = "roles.json"
#: Attributes a restore never gives a role (``roles.json`` key -> SQL keyword).
PRIVILEGED_ATTRIBUTES = {
    "superuser": "SUPERUSER",
    "createrole": "CREATEROLE",
    "createdb": "CREATEDB",
    "replication": "REPLICATION",
    "bypassrls": "BYPASSRLS",
}
_VERIFIER = re.compile(
    r"SCRAM-SHA-256\$[0-9]{1,7}:[A-Za-z0-9+/=]{1,100}\$[A-Za-z0-9+/=]{1,100}:[A-Za-z0-9+/=]{1,100}"
    r"|md5[0-9a-f]{32}"
)
#: ``rolvaliduntil::text``: a timestamp with time zone, or infinity.
_TIMESTAMP = re.compile(r"[0-9A-Za-z:+. -]{1,64}")


def _verifier(value: str) -> str:
    if not _VERIFIER.fullmatch(value):
        raise ValueError("is not a SCRAM-SHA-256 or md5 password verifier")
    return value


def _timestamp(value: str) -> str:
    if not _TIMESTAMP.fullmatch(value):
        raise ValueError(f"{value[:80]!r} is not a timestamp")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class RoleRecord(_Strict):
    """One role as ``roles.json`` records it (``pg_roles`` columns, with the verifier)."""

    name: Annotated[str, AfterValidator(role_name)]
    superuser: bool
    inherit: bool
    createrole: bool
    createdb: bool
    login: bool
    replication: bool
    bypassrls: bool
    connection_limit: Annotated[int, Field(ge=-1)]
    valid_until: Annotated[str, AfterValidator(_timestamp)] | None = None
    password: Annotated[str, AfterValidator(_verifier)] | None = None
    comment: str | None = None


class Membership(_Strict):
    """``member`` belongs to ``role`` (``pg_auth_members``)."""

    role: Annotated[str, AfterValidator(pg_name)]
    member: Annotated[str, AfterValidator(pg_name)]
    admin: bool


class RolesFile(_Strict):
    """The contents of ``roles.json``."""

    passwords: bool = True
    roles: list[RoleRecord] = Field(default_factory=list)
    memberships: list[Membership] = Field(default_factory=list)


def load_roles(archive: Path) -> RolesFile:
    """``roles.json`` of ``archive``, checked; empty when the archive has none."""
    path = archive / ROLES_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return RolesFile()
    try:
        data: Any = parse_json(raw)
        return RolesFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise BackupCorrupt(
            f"{path} is invalid, so no role was created: {problems}", path=str(archive)
        ) from exc
    except ValueError as exc:
        raise BackupCorrupt(f"{path} is not valid JSON: {exc}", path=str(archive)) from exc


def _privileged_existing(admin: psycopg.Connection[Any], names: Sequence[str]) -> dict[str, str]:
    """Existing roles among ``names`` that a restore must not hand out, with why."""
    rows = admin.execute(
        "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
        "FROM pg_roles WHERE rolname = ANY(%s)",
        [list(names)],
    ).fetchall()
    out: dict[str, str] = {}
    for name, *flags in rows:
        held = [word for word, on in zip(PRIVILEGED_ATTRIBUTES.values(), flags, strict=True) if on]
        if str(name).startswith("pg_"):
            out[str(name)] = "a predefined role"
        elif held:
            out[str(name)] = f"a role with {', '.join(held)}"
    for name in names:
        if name.startswith("pg_") and name not in out:
            out[name] = "a predefined role"
    return out


def _check_policy(
    admin: psycopg.Connection[Any], archive: Path, records: Sequence[RoleRecord], saved: RolesFile
) -> list[Membership]:
    """The memberships to grant; RestoreRefused for anything the policy forbids."""
    where = archive / ROLES_FILE
    for record in records:
        held = [word for key, word in PRIVILEGED_ATTRIBUTES.items() if getattr(record, key)]
        if held:
            raise RestoreRefused(
                f"{where} would recreate role {record.name} with {', '.join(held)}; a restore "
                "never creates privileged roles (the archive may have been tampered with). "
                f"Nothing was changed. If the role is genuine, create {record.name} by hand and "
                "restore again."
            )
    created = {r.name for r in records}
    grants = [m for m in saved.memberships if m.member in created]
    outside = sorted({m.role for m in grants if m.role not in created})
    forbidden = _privileged_existing(admin, outside)
    for grant in grants:
        if grant.role in forbidden:
            raise RestoreRefused(
                f"{where} would make the recreated role {grant.member} a member of "
                f"{grant.role}, {forbidden[grant.role]}; a restore never grants those (the "
                "archive may have been tampered with). Nothing was changed. Grant it by hand "
                "after the restore if it is right."
            )
    return grants


def ensure_roles(
    admin: psycopg.Connection[Any], archive: Path, datasets: Sequence[DatasetEntry]
) -> list[str]:
    """Create the roles ``datasets`` need that the server lacks; return those created.

    Everything is checked first (see the module's policy): a refusal leaves
    the server unchanged.
    """
    needed = sorted({r for d in datasets for r in d.details.get("roles", [])})
    existing = {
        str(r[0])
        for r in admin.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [needed])
    }
    missing = [r for r in needed if r not in existing]
    if not missing:
        return []
    saved = load_roles(archive)
    by_name = {role.name: role for role in saved.roles}
    unknown = [r for r in missing if r not in by_name]
    if unknown:
        raise BackupError(
            f"the data needs role(s) {', '.join(unknown)}, which neither exist on the server "
            f"nor are recorded in {archive / ROLES_FILE}. Create them first. Nothing was changed."
        )
    records = [by_name[name] for name in missing]
    grants = _check_policy(admin, archive, records, saved)
    created = [record.name for record in records if _create_role(admin, record)]
    for grant in grants:
        if grant.member not in created:
            continue
        statement = sql.SQL("GRANT {} TO {}{}").format(
            sql.Identifier(grant.role),
            sql.Identifier(grant.member),
            sql.SQL(" WITH ADMIN OPTION" if grant.admin else ""),
        )
        try:
            admin.execute(statement)
        except psycopg.errors.UndefinedObject:
            logger.warning(
                "restore: role %s no longer exists; not granting it to %s",
                grant.role,
                grant.member,
            )
    return created


def _create_role(admin: psycopg.Connection[Any], role: RoleRecord) -> bool:
    # Every privileged attribute is spelled out as NO...: the server's defaults
    # are not the archive's business, and _check_policy refused any other value.
    parts: list[sql.Composable] = [sql.SQL(f"NO{word}") for word in PRIVILEGED_ATTRIBUTES.values()]
    parts += [
        sql.SQL("INHERIT" if role.inherit else "NOINHERIT"),
        sql.SQL("LOGIN" if role.login else "NOLOGIN"),
        sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(role.connection_limit)),
    ]
    if role.password:
        # A verifier is stored as is: the password itself never existed here.
        parts.append(sql.SQL("PASSWORD {}").format(sql.Literal(role.password)))
    if role.valid_until:
        parts.append(sql.SQL("VALID UNTIL {}").format(sql.Literal(role.valid_until)))
    statement = sql.SQL("CREATE ROLE {} WITH {}").format(
        sql.Identifier(role.name), sql.SQL(" ").join(parts)
    )
    try:
        admin.execute(statement)
    except psycopg.errors.DuplicateObject:
        return False
    except psycopg.Error as exc:
        raise BackupError(
            f"cannot recreate role {role.name}: {exc.diag.message_primary or exc}"
        ) from exc
    if role.comment:
        admin.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                sql.Identifier(role.name), sql.Literal(role.comment)
            )
        )
    if role.login and not role.password:
        logger.warning("restore: role %s was recreated without a password", role.name)
    logger.info("restore: created role %s", role.name)
    return True
