"""One call gives a service its settings and ready clients.

A service reads the env file ``inv provision`` wrote for it (or the same
variables from its environment, as a container or a managed platform sets
them) and gets typed settings plus clients built from them::

    from infra_lib.service import ServiceSettings

    settings = ServiceSettings.load("env/infra/board-service.env")
    with settings.postgres() as conn:          # psycopg connection as board_user
        ...
    cache = settings.redis()                   # redis.Redis on the service's DB
    url = settings.presigner().put_url(...)    # presigned upload for a browser

Only the drivers a method needs are imported, when it is called.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra_lib._extras import optional_sdks
from infra_lib.errors import ConfigError
from infra_lib.stack.envfile import parse_env_lines
from infra_lib.stack.secrets import read_secret_file

if TYPE_CHECKING:
    import psycopg
    import redis

    from infra_lib.livekit.config import LiveKitConfig
    from infra_lib.livekit.tokens import TokenFactory
    from infra_lib.storage.config import S3Config
    from infra_lib.storage.presign import Presigner

__all__ = ["ServiceSettings"]

# Every variable `inv provision` may write into a service's env file.
_KNOWN = frozenset(
    {
        "SERVICE_NAME", "DATABASE_URL", "REDIS_URL", "REDIS_KEY_PREFIX", "S3_ENDPOINT",
        "S3_PUBLIC_ENDPOINT", "S3_REGION", "S3_FORCE_PATH_STYLE", "S3_BUCKET", "S3_PREFIXES",
        "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "LIVEKIT_URL", "LIVEKIT_API_KEY",
        "LIVEKIT_API_SECRET", "GATEWAY_URL", "GATEWAY_CA_FILE", "GATEWAY_S3_ENDPOINT",
        "GATEWAY_LIVEKIT_URL", "REDIS_TLS_CA_FILE",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """The settings of one service: ``KEY=value`` pairs with typed accessors.

    Secrets stay out of ``repr``. A method for a backend the service was not
    given raises :class:`ConfigError` naming the missing variable.
    """

    values: Mapping[str, str] = field(repr=False)
    name: str = ""

    @classmethod
    def load(
        cls,
        env_file: str | Path | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        secrets_dir: str | Path | None = None,
    ) -> ServiceSettings:
        """Read ``env_file`` (if given), then let ``environ`` override it.

        ``environ`` defaults to the process environment: a deployed service
        usually gets the same variables from its platform instead of a file.
        A secret may come as a file instead: ``<NAME>_FILE`` (e.g.
        ``DATABASE_URL_FILE=/run/secrets/database-url``), or ``secrets_dir``,
        a folder with one file per variable named after it (a Kubernetes
        Secret mounted as a volume, or what ``inv provision --secret-files``
        writes). A value set directly wins over a file.
        """
        values: dict[str, str] = {}
        if env_file is not None:
            path = Path(env_file)
            if not path.is_file():
                raise ConfigError(f"{path} does not exist; `inv provision` writes it")
            values.update(parse_env_lines(path.read_text(encoding="utf-8")))
        env = os.environ if environ is None else environ
        values.update({k: v for k, v in env.items() if k in _KNOWN and v})
        file_vars = {**values, **{k: v for k, v in env.items() if v}}
        for key in sorted(_KNOWN - {k for k, v in values.items() if v}):
            file_var = file_vars.get(f"{key}_FILE")
            if file_var:
                values[key] = read_secret_file(Path(file_var), f"{key}_FILE")
            elif secrets_dir is not None and (Path(secrets_dir) / key).is_file():
                values[key] = read_secret_file(Path(secrets_dir) / key, key)
        return cls(
            # Only the file variants of known names go; GATEWAY_CA_FILE is a name of its own.
            {k: v for k, v in values.items() if not (k.endswith("_FILE") and k[:-5] in _KNOWN)},
            values.get("SERVICE_NAME", ""),
        )

    def require(self, key: str) -> str:
        """The value of ``key``; ConfigError when the service was not given it."""
        value = self.values.get(key)
        if not value:
            who = self.name or "this service"
            raise ConfigError(
                f"{key} is not set for {who}: its manifest entry may not ask for that backend "
                "(add it to infra.toml and run `inv provision`)"
            )
        return value

    # -- PostgreSQL --------------------------------------------------------

    def postgres(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A new psycopg connection to the service's database (close it when done)."""
        with optional_sdks("PostgreSQL connections"):
            import psycopg

        return psycopg.connect(self.require("DATABASE_URL"), **kwargs)

    # -- Redis ---------------------------------------------------------------

    def redis(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client on the service's DB, as its own ACL user when it has one."""
        with optional_sdks("Redis clients"):
            import redis

        if self.values.get("REDIS_TLS_CA_FILE"):
            kwargs.setdefault("ssl_ca_certs", self.values["REDIS_TLS_CA_FILE"])
        client: redis.Redis = redis.Redis.from_url(self.require("REDIS_URL"), **kwargs)
        return client

    @property
    def redis_key_prefix(self) -> str:
        """What every Redis key and channel of the service starts with (``board-service:``).

        The service's ACL user may touch nothing else, in any DB.
        """
        return self.require("REDIS_KEY_PREFIX")

    # -- Object storage ------------------------------------------------------

    def s3_config(self) -> S3Config:
        """The service's S3 settings (its own keys, its bucket and endpoints)."""
        with optional_sdks("object storage"):
            from infra_lib.storage.config import S3Config

        return S3Config(
            endpoint=self.require("S3_ENDPOINT"),
            public_endpoint=self.values.get("S3_PUBLIC_ENDPOINT", ""),
            access_key=self.require("S3_ACCESS_KEY_ID"),
            secret_key=self.require("S3_SECRET_ACCESS_KEY"),
            region=self.values.get("S3_REGION", "us-east-1"),
            addressing="path"
            if self.values.get("S3_FORCE_PATH_STYLE", "true") == "true"
            else "virtual",
        )

    @property
    def bucket(self) -> str:
        """The bucket the service stores its objects in."""
        return self.require("S3_BUCKET")

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The key prefixes the service may use."""
        return tuple(p for p in self.require("S3_PREFIXES").split(",") if p)

    def presigner(self) -> Presigner:
        """Presigned upload/download URLs signed for the public endpoint."""
        with optional_sdks("presigned URLs"):
            from infra_lib.storage.presign import Presigner

            return Presigner(self.s3_config())

    # -- LiveKit -------------------------------------------------------------

    def livekit_config(self) -> LiveKitConfig:
        """The LiveKit URL and API key pair the service signs tokens with."""
        with optional_sdks("LiveKit"):
            from infra_lib.livekit.config import LiveKitConfig

        return LiveKitConfig(
            url=self.require("LIVEKIT_URL"),
            api_key=self.require("LIVEKIT_API_KEY"),
            api_secret=self.require("LIVEKIT_API_SECRET"),
        )

    def token_factory(self) -> TokenFactory:
        """A factory of LiveKit join tokens for this service's rooms."""
        with optional_sdks("LiveKit tokens"):
            from infra_lib.livekit.tokens import TokenFactory

        return TokenFactory(self.livekit_config())
