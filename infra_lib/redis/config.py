"""How to reach one Redis server: host, credentials, TLS, timeouts.

Built once at the edge (a task, a fixture, a service's start-up) and passed
in. Importing this module does not import redis-py; only :meth:`RedisConfig.client`
does, so a service that just needs a URL does not pay for the driver.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from infra_lib._extras import optional_sdks
from infra_lib.errors import ConfigError, ProvisionError, ServiceUnavailable
from infra_lib.names import url_host

if TYPE_CHECKING:
    import redis

    from infra_lib.stack.settings import StackSettings

__all__ = ["RedisConfig", "translate_errors"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisConfig:
    """Connection settings of one Redis server (the compose one or a managed one).

    ``password`` is left out of ``repr`` so that logging or printing the
    config never shows it. ``tls`` selects ``rediss://`` and TLS in
    :meth:`client`; ``tls_ca_file`` is the CA bundle to verify the server
    with (the system store when ``None``).
    """

    host: str
    port: int = 6379
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    tls: bool = False
    tls_ca_file: str | None = None
    socket_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("Redis host is empty; set INFRA_PUBLIC_HOST or pass host=.")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"Redis port {self.port} is not between 1 and 65535.")
        if self.socket_timeout <= 0:
            raise ConfigError(f"Redis socket_timeout must be positive, not {self.socket_timeout}.")
        if self.tls_ca_file is not None and not self.tls:
            raise ConfigError("tls_ca_file is set but tls is off; set tls=True to use it.")

    @classmethod
    def from_stack(cls, settings: StackSettings) -> RedisConfig:
        """The admin connection the settings describe: the stack's, or ``REDIS_HOST``'s."""
        return cls(
            host=settings.redis_host or settings.infra_public_host,
            port=settings.redis_port,
            password=settings.secret("redis_password"),
            username=settings.redis_username,
            tls=settings.redis_tls,
            tls_ca_file=settings.redis_tls_ca_file,
        )

    def url(self, db: int, *, username: str | None = None, password: str | None = None) -> str:
        """A ``redis://`` (``rediss://`` with TLS) URL for DB number ``db``.

        ``username`` and ``password`` default, each on its own, to this
        config's; pass a service's ACL user and password to hand that service
        its own URL. Both are percent-encoded, so any character survives
        redis-py's, go-redis' and Lettuce's URL parsers. The CA file is not
        put in the URL: there is no query parameter those clients agree on.
        """
        if isinstance(db, bool) or not isinstance(db, int) or db < 0:
            raise ConfigError(f"Redis DB number must be a non-negative integer, not {db!r}.")
        user = self.username if username is None else username
        secret = self.password if password is None else password
        userinfo = ""
        if user or secret:
            userinfo = quote(user or "", safe="")
            if secret:
                userinfo += ":" + quote(secret, safe="")
            userinfo += "@"
        host = url_host(self.host)
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{userinfo}{host}:{self.port}/{db}"

    @property
    def address(self) -> str:
        """``host:port``, for messages."""
        return f"{self.host}:{self.port}"

    def client(self, db: int = 0, *, decode_responses: bool = False) -> redis.Redis:
        """A redis-py client on DB ``db``; the caller closes it (``with`` or ``.close()``)."""
        with optional_sdks("Redis clients"):
            import redis

        if isinstance(db, bool) or not isinstance(db, int) or db < 0:
            raise ConfigError(f"Redis DB number must be a non-negative integer, not {db!r}.")
        if self.tls:
            return redis.Redis(
                host=self.host,
                port=self.port,
                db=db,
                username=self.username,
                password=self.password,
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.socket_timeout,
                decode_responses=decode_responses,
                ssl=True,
                ssl_ca_certs=self.tls_ca_file,
                ssl_cert_reqs="required",
                ssl_check_hostname=True,
            )
        return redis.Redis(
            host=self.host,
            port=self.port,
            db=db,
            username=self.username,
            password=self.password,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_timeout,
            decode_responses=decode_responses,
        )


@contextmanager
def translate_errors(
    where: str,
    action: str,
    *,
    username: str | None = None,
    secrets: Iterable[str | None] = (),
) -> Iterator[None]:
    """Turn redis-py errors raised inside the block into infra_lib's.

    ``where`` is ``host:port``, ``action`` says what was being done ("claim a
    DB number"). Every string in ``secrets`` is blanked out of the messages,
    in case a server or driver ever echoes one back.
    """
    import redis.exceptions

    hidden = [secret for secret in secrets if secret]

    def scrub(exc: BaseException) -> str:
        text = str(exc)
        for secret in hidden:
            text = text.replace(secret, "********")
        return text

    try:
        yield
    except redis.exceptions.AuthenticationError as exc:
        raise ServiceUnavailable(
            f"Redis at {where} rejected the credentials of user {username or 'default'!r} "
            f"while trying to {action}. Check that REDIS_PASSWORD in .env is the password the "
            "running server was started with (`inv status`; `inv up` recreates the container "
            "after a change).",
            service="redis",
        ) from exc
    except redis.exceptions.TimeoutError as exc:
        raise ServiceUnavailable(
            f"Redis at {where} did not answer in time while trying to {action} ({scrub(exc)}). "
            "Is the stack up and healthy? Check with `inv status`.",
            service="redis",
        ) from exc
    except redis.exceptions.ConnectionError as exc:
        raise ServiceUnavailable(
            f"cannot reach Redis at {where} to {action} ({scrub(exc)}). Is the stack up? "
            "Check with `inv status` and start it with `inv up`; check REDIS_PORT and "
            "INFRA_PUBLIC_HOST in .env.",
            service="redis",
        ) from exc
    except redis.exceptions.NoPermissionError as exc:
        raise ProvisionError(
            f"Redis at {where} does not permit user {username or 'default'!r} to {action} "
            f"({scrub(exc)}); provisioning needs the admin user (REDIS_PASSWORD)."
        ) from exc
    except redis.exceptions.ResponseError as exc:
        raise ProvisionError(f"Redis at {where} refused to {action}: {scrub(exc)}") from exc
