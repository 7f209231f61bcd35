"""Connection settings for PostgreSQL, local or managed."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlencode

from infra_lib.names import url_host

if TYPE_CHECKING:
    from infra_lib.stack.settings import StackSettings

__all__ = ["PostgresConfig", "SslMode"]

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    """How to reach a PostgreSQL server as a given role.

    Works the same against the compose stack and a managed server (set
    ``sslmode="require"`` or ``"verify-full"`` with ``sslrootcert``). The
    password is kept out of ``repr`` and is handed to libpq as a keyword,
    never inside a connection string that could be logged.
    """

    host: str
    port: int = 5432
    user: str = "postgres"
    password: str | None = field(default=None, repr=False)
    dbname: str = "postgres"
    sslmode: SslMode = "prefer"
    sslrootcert: str | None = None
    connect_timeout: int = 5
    application_name: str = "infra-lib"

    @classmethod
    def from_stack(cls, settings: StackSettings) -> PostgresConfig:
        """The admin connection the settings describe: the stack's, or ``POSTGRES_HOST``'s."""
        return cls(
            host=settings.postgres_host or settings.infra_public_host,
            port=settings.postgres_port,
            user=settings.postgres_user,
            password=settings.secret("postgres_password"),
            dbname=settings.postgres_db,
            sslmode=settings.postgres_sslmode,
            sslrootcert=settings.postgres_sslrootcert,
        )

    def with_login(
        self, user: str, password: str | None, dbname: str | None = None
    ) -> PostgresConfig:
        """The same server as another role (and optionally database)."""
        return replace(self, user=user, password=password, dbname=dbname or self.dbname)

    def connect_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect``."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "sslmode": self.sslmode,
            "connect_timeout": self.connect_timeout,
            "application_name": self.application_name,
        }
        if self.password is not None:
            kwargs["password"] = self.password
        if self.sslrootcert:
            kwargs["sslrootcert"] = self.sslrootcert
        kwargs.update(overrides)
        return kwargs

    def url(self, *, include_password: bool = True) -> str:
        """A ``postgresql://`` URL for services that take ``DATABASE_URL``."""
        auth = quote(self.user, safe="")
        if include_password and self.password is not None:
            auth += ":" + quote(self.password, safe="")
        query: dict[str, str] = {"sslmode": self.sslmode}
        if self.sslrootcert:
            query["sslrootcert"] = self.sslrootcert
        host = url_host(self.host)
        database = quote(self.dbname, safe="")
        return f"postgresql://{auth}@{host}:{self.port}/{database}?{urlencode(query)}"
