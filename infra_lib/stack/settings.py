"""Typed settings of the compose stack, read from ``.env`` at the edge.

Precedence follows Docker Compose so that what the tasks see is what the
containers get: a variable set in the process environment wins over the same
variable in ``.env``, which wins over the default here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra_lib.errors import ConfigError

__all__ = ["KNOWN_PROFILES", "Port", "StackSettings", "load_stack_settings"]

Port = Annotated[int, Field(ge=1, le=65535)]

#: Compose profiles of ``compose/*.yaml`` that ``INFRA_PROFILES`` may switch on.
KNOWN_PROFILES: tuple[str, ...] = ("observability", "gateway", "grafana", "chaos")

# What VictoriaMetrics accepts for -retentionPeriod and Prometheus for intervals.
_DURATION = re.compile(r"^[1-9][0-9]*(ms|s|m|h|d|w|y)$")
# What Jaeger's badger TTL takes: a Go duration, which has no days.
_GO_DURATION = re.compile(r"^[1-9][0-9]*(s|m|h)$")

# What nginx accepts for sizes and times (client_max_body_size, proxy_read_timeout).
_NGINX_SIZE = re.compile(r"^[0-9]+[kmg]?$")
_NGINX_TIME = re.compile(r"^[1-9][0-9]*(ms|s|m|h|d)$")

# Compose's own rule for project names.
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class StackSettings(BaseSettings):
    """Everything the tasks need to know about the local stack.

    Built once by :func:`load_stack_settings`; frozen afterwards. Secrets are
    :class:`~pydantic.SecretStr`, so printing the settings never shows them.
    """

    model_config = SettingsConfigDict(
        extra="ignore",
        frozen=True,
        case_sensitive=False,
        env_ignore_empty=True,
    )

    compose_project_name: str = "infra"
    infra_bind_address: str = "127.0.0.1"
    infra_public_host: str = "127.0.0.1"

    postgres_port: Port = 5432
    postgres_user: str = "postgres"
    postgres_password: SecretStr | None = None
    postgres_db: str = "postgres"
    #: A PostgreSQL server outside the stack (RDS, Cloud SQL, ...): the tasks
    #: talk to it at this host and run the host's ``pg_dump``/``pg_restore``.
    #: Unset: the stack's own container, at ``infra_public_host``.
    postgres_host: str | None = None
    postgres_sslmode: Literal[
        "disable", "allow", "prefer", "require", "verify-ca", "verify-full"
    ] = "prefer"
    #: CA bundle that signs the server's certificate (``verify-ca``/``verify-full``).
    postgres_sslrootcert: str | None = None
    #: Where ``pg_dump``/``pg_restore`` run for a server outside the stack:
    #: ``local`` (``PATH``), ``image`` (a one-off container of
    #: ``postgres_tools_image``), or ``auto``: local when its major version is
    #: the server's or newer, else the image.
    postgres_tools: Literal["auto", "local", "image"] = "auto"
    #: The image of those one-off containers; the stack's ``POSTGRES_IMAGE`` by default.
    postgres_tools_image: str | None = None
    postgres_image: str = "postgres:17.6-alpine"

    redis_port: Port = 6379
    redis_password: SecretStr | None = None
    redis_databases: int = Field(default=16, ge=1, le=1_000_000)
    #: A Redis outside the stack (ElastiCache, Memorystore, ...), reached at
    #: this host; unset: the stack's own, at ``infra_public_host``.
    redis_host: str | None = None
    #: The admin's ACL user there (``default`` when unset).
    redis_username: str | None = None
    redis_tls: bool = False
    #: CA bundle that signs the server's certificate (the system's when unset).
    redis_tls_ca_file: str | None = None

    minio_api_port: Port = 9000
    minio_console_port: Port = 9001
    minio_root_user: str | None = None
    minio_root_password: SecretStr | None = None

    #: An object store outside the stack (AWS S3, or another S3 service), e.g.
    #: ``https://s3.eu-west-1.amazonaws.com``; unset: the stack's MinIO.
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    #: ``virtual`` (``bucket.host``, AWS's default) or ``path``; for ``s3_endpoint`` only.
    s3_addressing: Literal["path", "virtual"] = "virtual"
    #: The admin's keys there (they create buckets; per-service users are MinIO's).
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None

    livekit_http_port: Port = 7880
    livekit_tcp_port: Port = 7881
    livekit_rtc_port_start: Port = 50000
    livekit_rtc_port_end: Port = 50019
    livekit_api_key: str | None = None
    livekit_api_secret: SecretStr | None = None

    turn_port: Port = 3478
    turn_relay_port_start: Port = 49160
    turn_relay_port_end: Port = 49179
    turn_secret: SecretStr | None = None
    turn_realm: str = "infra.local"

    #: The folder of the stack's secret files (one file per secret, see
    #: :mod:`infra_lib.stack.secrets`). Absolute when given; resolved to
    #: ``env/<project>/secrets`` beside the env file by :func:`load_stack_settings`.
    infra_secrets_dir: str | None = None

    #: Compose profiles switched on (comma-separated), e.g. ``observability``;
    #: written by ``inv up --with NAME`` / ``--without NAME``.
    infra_profiles: str = ""

    #: Observability layer (``compose/observability.yaml``).
    metrics_port: Port = 8428
    metrics_retention: str = "7d"
    metrics_scrape_interval: str = "10s"
    victoriametrics_image: str = "victoriametrics/victoria-metrics:v1.151.0"
    logs_port: Port = 9428
    logs_retention: str = "7d"
    otlp_grpc_port: Port = 4317
    otlp_http_port: Port = 4318
    traces_ui_port: Port = 16686
    traces_retention: str = "168h"
    #: Grafana (``compose/grafana.yaml``, profile ``grafana``): optional,
    #: pulled, never run in this project's CI.
    grafana_image: str = "grafana/grafana-oss:12.2.0"
    grafana_port: Port = 3000

    #: Failure experiments' TCP proxy (``compose/chaos.yaml``, profile ``chaos``).
    toxiproxy_image: str = "ghcr.io/shopify/toxiproxy:2.5.0"
    toxiproxy_api_port: Port = 8474
    toxiproxy_postgres_port: Port = 15432
    toxiproxy_redis_port: Port = 16379
    toxiproxy_minio_port: Port = 19000

    #: Gateway (``compose/gateway.yaml``, profile ``gateway``).
    gateway_image: str = "nginx:1.28.0-alpine"
    gateway_http_port: Port = 80
    gateway_https_port: Port = 443
    #: Name the gateway serves; ``s3.<name>`` and ``livekit.<name>`` lead to
    #: MinIO and LiveKit. ``localhost`` needs no DNS set-up in browsers.
    gateway_host: str = "localhost"
    gateway_max_body_size: str = "10m"
    gateway_s3_max_body_size: str = "5g"
    gateway_connect_timeout: str = "5s"
    gateway_read_timeout: str = "60s"
    gateway_websocket_timeout: str = "1h"
    #: ``auto``: HSTS except for localhost names and IP addresses.
    gateway_hsts: Literal["auto", "on", "off"] = "auto"

    #: Components the smoke suite leaves out because they are not deployed
    #: here (comma-separated: postgres, redis, storage, livekit, coturn).
    infra_smoke_skip: str = ""

    @field_validator("compose_project_name")
    @classmethod
    def _project_name(cls, value: str) -> str:
        if not _PROJECT_NAME.fullmatch(value):
            raise ValueError(
                "must start with a lowercase letter or digit and hold only "
                "lowercase letters, digits, '-' and '_'"
            )
        return value

    @field_validator("metrics_retention", "metrics_scrape_interval", "logs_retention")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not _DURATION.fullmatch(value):
            raise ValueError("must be a duration such as 15s, 5m, 12h, 7d, 4w or 1y")
        return value

    @field_validator("traces_retention")
    @classmethod
    def _go_duration(cls, value: str) -> str:
        if not _GO_DURATION.fullmatch(value):
            raise ValueError("must be a duration in hours, minutes or seconds, such as 168h")
        return value

    @field_validator("gateway_max_body_size", "gateway_s3_max_body_size")
    @classmethod
    def _size(cls, value: str) -> str:
        if not _NGINX_SIZE.fullmatch(value):
            raise ValueError("must be a size such as 10m, 512k or 5g (0: no limit)")
        return value

    @field_validator("gateway_connect_timeout", "gateway_read_timeout", "gateway_websocket_timeout")
    @classmethod
    def _time(cls, value: str) -> str:
        if not _NGINX_TIME.fullmatch(value):
            raise ValueError("must be a duration such as 500ms, 5s, 60s, 10m or 1h")
        return value

    @field_validator("gateway_host")
    @classmethod
    def _gateway_host(cls, value: str) -> str:
        from infra_lib.gateway.hostnames import check_dns_name

        return check_dns_name(value, "GATEWAY_HOST")

    @field_validator("postgres_sslrootcert", "redis_tls_ca_file")
    @classmethod
    def _ca_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_absolute():
            raise ValueError("must be an absolute path to a CA bundle (PEM)")
        return value

    @property
    def storage_managed(self) -> bool:
        """Whether the object store is outside the stack (``S3_ENDPOINT`` is set)."""
        return self.s3_endpoint is not None

    @property
    def postgres_managed(self) -> bool:
        """Whether PostgreSQL is a server outside the stack (``POSTGRES_HOST`` is set)."""
        return self.postgres_host is not None

    @field_validator("infra_profiles")
    @classmethod
    def _profiles(cls, value: str) -> str:
        for name in (x.strip() for x in value.split(",")):
            if name and name not in KNOWN_PROFILES:
                raise ValueError(
                    f"unknown profile {name!r}; known profiles: {', '.join(KNOWN_PROFILES)}"
                )
        names = {x.strip() for x in value.split(",")}
        if "grafana" in names and "observability" not in names:
            # Grafana's datasources are the layer's stores.
            raise ValueError(
                "the grafana profile needs the observability layer: "
                "`inv up --with observability --with grafana`"
            )
        return value

    @property
    def profiles(self) -> tuple[str, ...]:
        """The Compose profiles switched on, in the order written, without duplicates."""
        names = (x.strip() for x in self.infra_profiles.split(","))
        return tuple(dict.fromkeys(x for x in names if x))

    def port_range(self, start_field: str, end_field: str) -> range:
        """The inclusive port range between two fields, as a ``range``."""
        start = int(getattr(self, start_field))
        end = int(getattr(self, end_field))
        return range(start, end + 1)

    @property
    def url_host(self) -> str:
        """``infra_public_host`` ready to put in a URL (IPv6 literals bracketed)."""
        from infra_lib.names import url_host

        return url_host(self.infra_public_host)

    @property
    def secrets_dir(self) -> Path:
        """Where the stack's secret files live (``env/<project>/secrets`` by default)."""
        if self.infra_secrets_dir is None:
            raise ConfigError("the secrets folder is known once settings come from an env file")
        return Path(self.infra_secrets_dir)

    def secret(self, name: str) -> str:
        """The plain value of a secret field; raises ConfigError when it is unset."""
        return self.required(name)

    def required(self, name: str) -> str:
        """The value of a field that has no default; ConfigError saying how to set it."""
        value = getattr(self, name)
        if value is None:
            raise ConfigError(
                f"{name.upper()} is not set. Run `inv init` to write .env and the secret "
                f"files with generated secrets, or set {name.upper()} or {name.upper()}_FILE "
                "in the environment."
            )
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        return str(value)


def load_stack_settings(
    env_file: Path, *, environ: Mapping[str, str] | None = None, require_file: bool = True
) -> StackSettings:
    """Read the stack settings from ``env_file`` and ``environ``.

    ``environ`` is the process environment at the edge (a task or a fixture);
    pass ``{}`` to ignore it. A missing file is a :class:`ConfigError` that
    says how to create one, unless ``require_file`` is false.
    """
    if require_file and not env_file.is_file():
        raise ConfigError(
            f"{env_file} does not exist. Run `inv init` to create it from .env.example "
            "with generated secrets."
        )
    known = {name.upper() for name in StackSettings.model_fields}
    values: dict[str, Any] = {}
    if env_file.is_file():
        from dotenv import dotenv_values

        # The same parser pydantic-settings' dotenv source uses, called
        # directly: that source costs 0.2 s per load here, on every task.
        # Empty values count as unset, as env_ignore_empty says.
        values = {
            k.lower(): v for k, v in dotenv_values(env_file).items() if k.upper() in known and v
        }
    if environ is not None:
        # The environment wins over the file; it is read only through
        # `environ`, so tests and library callers stay in control.
        values.update({k.lower(): v for k, v in environ.items() if k.upper() in known and v != ""})
    try:
        settings: StackSettings = _FileOnlySettings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings in {env_file}: {problems}") from exc
    return _with_secret_files(settings, env_file, environ or {})


def _with_secret_files(
    settings: StackSettings, env_file: Path, environ: Mapping[str, str]
) -> StackSettings:
    """Fill each secret from ``<NAME>_FILE`` or the secrets folder when not given as a value.

    A value set directly wins (the environment over ``.env``, as for every
    setting); a ``.env`` value that differs from the secret file Compose
    hands the containers is refused, because one of the two is wrong and the
    error would otherwise surface as a failed login much later.
    """
    from infra_lib.stack.envfile import parse_env_lines
    from infra_lib.stack.secrets import SECRET_FILES, read_secret_file, secrets_dir

    dotenv = parse_env_lines(env_file.read_text(encoding="utf-8")) if env_file.is_file() else {}

    def given(key: str) -> str:
        return environ.get(key) or dotenv.get(key) or ""

    directory = secrets_dir(
        env_file, settings.compose_project_name, given("INFRA_SECRETS_DIR") or None
    )
    update: dict[str, Any] = {"infra_secrets_dir": str(directory)}
    # Secrets of servers outside the stack have no file of the stack's own (name None).
    external: dict[str, str | None] = dict.fromkeys(_EXTERNAL_SECRETS)
    for key, name in {**SECRET_FILES, **external}.items():
        field = key.lower()
        if field not in StackSettings.model_fields:
            continue
        current = getattr(settings, field)
        file_var = given(f"{key}_FILE")
        if current is not None and file_var:
            raise ConfigError(f"both {key} and {key}_FILE are set; they are exclusive, keep one.")
        if file_var:
            update[field] = SecretStr(read_secret_file(Path(file_var), f"{key}_FILE"))
            continue
        if name is None:
            continue
        path = directory / name
        if current is None:
            if path.is_file():
                update[field] = SecretStr(read_secret_file(path, key))
        elif (
            dotenv.get(key)
            and not environ.get(key)
            and path.is_file()
            and read_secret_file(path, key) != current.get_secret_value()
        ):
            raise ConfigError(
                f"{key} in {env_file} differs from the secret file {path}, which is what "
                "the containers get. Delete the line from the env file if the file is "
                "right (`inv init --migrate-secrets` moves secrets out of .env), or "
                "put the right value in the file."
            )
    return settings.model_copy(update=update)


#: Secrets the settings also take as ``<NAME>_FILE``, besides the stack's own.
_EXTERNAL_SECRETS = ("S3_SECRET_ACCESS_KEY",)


class _FileOnlySettings(StackSettings):
    """StackSettings from the values given only: never ``os.environ`` or a file by themselves."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: Any,
        env_settings: Any,
        dotenv_settings: Any,
        file_secret_settings: Any,
    ) -> tuple[Any, ...]:
        return (init_settings,)
