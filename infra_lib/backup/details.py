"""What each target may record about a dataset, checked before a restore uses it.

A manifest is read back from a directory or a bucket that someone else may
have written to, and its ``details`` become SQL (database owner, locale,
grants), Redis DB numbers and bucket names. So they are parsed against a
schema per target: exact types (``"5"`` is not a number, ``true`` is not
one either), identifiers of the length PostgreSQL accepts and without
control characters, privileges from an allow-list, DB numbers in range,
valid bucket names and prefixes, and a dataset name that agrees with them.
Unknown keys are refused rather than carried along unchecked: a new detail
must be added here before an archive may carry it.

This catches a forged or damaged manifest, not a forged archive: see the
threat model in :mod:`infra_lib.backup.remote`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from infra_lib.errors import ConfigError

__all__ = [
    "DATABASE_PRIVILEGES",
    "MAX_REDIS_DB",
    "AclGrant",
    "MinioDetails",
    "PostgresDetails",
    "RedisDetails",
    "check_details",
    "pg_name",
    "role_name",
]

#: PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes.
_PG_NAME_BYTES = 63
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Encoding and locale names are quoted as literals; these classes still keep
#: them to what ``pg_database`` can hold (``en_US.utf8``, ``und-u-ks-level2``).
_ENCODING = re.compile(r"[A-Za-z0-9_]{1,32}")
_LOCALE = re.compile(r"[A-Za-z0-9_.@=+;:-]{0,128}")
#: Privileges on a database (``aclexplode`` spells them this way), to SQL keywords.
DATABASE_PRIVILEGES = {
    "CONNECT": "CONNECT",
    "TEMPORARY": "TEMPORARY",
    "TEMP": "TEMPORARY",
    "CREATE": "CREATE",
    "ALL": "ALL",
}
#: Redis has no hard limit; a real ``databases`` setting stays far below this.
MAX_REDIS_DB = 1 << 16


def pg_name(value: str) -> str:
    """``value`` if PostgreSQL can hold it as a name unchanged: 1-63 bytes, no control characters.

    Names are always passed quoted (``sql.Identifier``), so quotes and
    spaces are harmless; what is refused is what would be truncated or
    could never have come from a catalog.
    """
    if not value or len(value.encode()) > _PG_NAME_BYTES or _CONTROL.search(value):
        raise ValueError(f"{value!r} is not a PostgreSQL name (1-63 bytes, no control characters)")
    return value


def role_name(value: str) -> str:
    """A role name an archive may ask for: a :func:`pg_name`, not ``pg_*`` (predefined roles)."""
    pg_name(value)
    if value.lower().startswith("pg_") or value.lower() == "public":
        raise ValueError(f"{value!r} is a predefined role, never one a backup recreates or grants")
    return value


def _encoding(value: str) -> str:
    if not _ENCODING.fullmatch(value):
        raise ValueError(f"{value!r} is not an encoding name")
    return value


def _locale(value: str) -> str:
    if not _LOCALE.fullmatch(value):
        raise ValueError(f"{value!r} is not a locale name")
    return value


def _privilege(value: str) -> str:
    if value not in DATABASE_PRIVILEGES:
        raise ValueError(
            f"{value[:80]!r} is not a database privilege; only "
            f"{', '.join(DATABASE_PRIVILEGES)} are restored"
        )
    return value


def _grantee(value: str) -> str:
    # CONNECT for pg_monitor is harmless and real: any existing name may be a grantee.
    return value if value == "PUBLIC" else pg_name(value)


def _bucket(value: str) -> str:
    from infra_lib.storage.keys import check_bucket_name

    try:
        return check_bucket_name(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _prefix(value: str) -> str:
    from infra_lib.storage.keys import check_prefix

    try:
        return check_prefix(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


PgName = Annotated[str, AfterValidator(pg_name)]
RoleName = Annotated[str, AfterValidator(role_name)]
Count = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    # Strict: JSON's true is not 1 and "5" is not 5; lists stay lists (JSON has no tuples).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class AclGrant(_Strict):
    """One entry of a database's ACL."""

    grantee: Annotated[str, AfterValidator(_grantee)]
    privilege: Annotated[str, AfterValidator(_privilege)]
    grantable: bool


class PostgresDetails(_Strict):
    """``details`` of a PostgreSQL dataset (one database)."""

    owner: PgName | None = None
    encoding: Annotated[str, AfterValidator(_encoding)] | None = None
    collate: Annotated[str, AfterValidator(_locale)] | None = None
    ctype: Annotated[str, AfterValidator(_locale)] | None = None
    locale_provider: Literal["c", "i", "b"] | None = None
    locale: Annotated[str, AfterValidator(_locale)] | None = None
    connection_limit: Annotated[int, Field(ge=-1)] = -1
    comment: str | None = None
    #: None: the default ACL (nothing was granted or revoked).
    acl: list[AclGrant] | None = None
    sequences: dict[str, int | None] = Field(default_factory=dict)
    large_objects: Count = 0
    roles: list[RoleName] = Field(default_factory=list)


class RedisDetails(_Strict):
    """``details`` of a Redis dataset (one DB)."""

    db: Annotated[int, Field(ge=0, lt=MAX_REDIS_DB)]
    expiring: Count = 0


class MinioDetails(_Strict):
    """``details`` of an object-storage dataset (a bucket, or prefixes in it)."""

    bucket: Annotated[str, AfterValidator(_bucket)]
    prefixes: list[Annotated[str, AfterValidator(_prefix)]] = Field(default_factory=list)


def check_details(target: str, name: str, details: dict[str, Any]) -> None:
    """Raise ValueError when ``details`` (and the dataset ``name``) break ``target``'s schema."""
    from infra_lib.backup.target import get_target

    get_target(target).check_details(name, details)
