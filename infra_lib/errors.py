"""The one error tree of infra_lib.

Every failure the library reports is an :class:`InfraError`, so callers (the
Invoke tasks, a service's start-up code, a pytest fixture) catch one type and
print its message, which always says what happened and what to do next::

    InfraError
    ├── ConfigError            settings missing or invalid (.env, manifest, arguments)
    │   ├── EnvFileExists      `inv init` would overwrite an existing .env
    │   ├── ForeignProject     the compose project's containers belong to another checkout
    │   ├── MissingExtra       an optional SDK is not installed (names the extra to add)
    │   ├── ManifestError      infra.toml is invalid (names file, service, field)
    │   ├── GatewayConfigRejected  nginx refused a generated gateway config; nothing applied
    │   └── InvalidObjectKey   an object key or key segment breaks the layout rules
    ├── DockerUnavailable      no Docker engine or Compose plugin to talk to
    ├── PortInUse              a published port is taken before the stack starts
    ├── StackError             Compose failed to start, stop or inspect the stack
    │   └── ServiceUnhealthy   a service did not become healthy in time
    ├── ServiceUnavailable     a server does not answer its own protocol
    ├── ProvisionError         a database, role, Redis DB or bucket cannot be provisioned
    │   ├── AllocationConflict a Redis DB number is claimed by another service
    │   └── CapacityExhausted  no free Redis DB number is left
    ├── LiveKitError           LiveKit refused an API call (bad argument, missing room, ...)
    ├── WebhookRejected        a webhook's signature, key, expiry or body hash does not check out
    ├── BackupError            a backup or restore failed (dump, copy, count check)
    │   └── BackupCorrupt      an archive does not match its manifest (missing file, checksum)
    └── RestoreRefused         a restore would overwrite data, or grant what an archive may
                               not (a privileged role, a stripped encryption); nothing changed

Driver errors (psycopg, redis, minio, botocore, livekit) are translated at the
client edge with ``raise ... from exc``, so the original stays attached.
"""

from __future__ import annotations

__all__ = [
    "AllocationConflict",
    "BackupCorrupt",
    "BackupError",
    "CapacityExhausted",
    "ConfigError",
    "DockerUnavailable",
    "EnvFileExists",
    "ForeignProject",
    "GatewayConfigRejected",
    "InfraError",
    "InvalidObjectKey",
    "LiveKitError",
    "ManifestError",
    "MissingExtra",
    "PortInUse",
    "ProvisionError",
    "RestoreRefused",
    "ServiceUnavailable",
    "ServiceUnhealthy",
    "StackError",
    "WebhookRejected",
]


class InfraError(Exception):
    """Base class of every error raised by infra_lib.

    ``str(error)`` is a complete message for a person: what failed and what to
    do about it. ``exit_code`` is what a command-line entry point should exit
    with.
    """

    exit_code: int = 1


class ConfigError(InfraError):
    """Settings are missing or invalid: a ``.env`` value, a file, an argument."""

    exit_code = 2


class EnvFileExists(ConfigError):
    """Writing ``.env`` would overwrite one that already holds secrets."""


class ForeignProject(ConfigError):
    """The compose project's containers were created from another checkout.

    Acting on them (up, down, provision, backup, restore) would change or
    delete the other checkout's stack; nothing was done.
    """


class MissingExtra(ConfigError):
    """An optional SDK is not installed; the message names the extra that brings it.

    ``module`` is the module that failed to import, ``extra`` the
    ``infra-lib[...]`` extra to install.
    """

    def __init__(self, message: str, *, module: str, extra: str) -> None:
        super().__init__(message)
        self.module = module
        self.extra = extra


class DockerUnavailable(InfraError):
    """No Docker engine answers, or the Compose v2 plugin is missing."""


class PortInUse(InfraError):
    """A port the stack publishes is already taken on the host.

    Attributes name the port and the ``.env`` variable that moves it.
    """

    def __init__(self, message: str, *, service: str, port: int, variable: str) -> None:
        super().__init__(message)
        self.service = service
        self.port = port
        self.variable = variable


class StackError(InfraError):
    """Docker Compose failed to start, stop or inspect the stack."""


class ServiceUnhealthy(StackError):
    """A service did not become healthy; carries its last log lines."""

    def __init__(self, message: str, *, service: str, logs: str = "") -> None:
        super().__init__(message)
        self.service = service
        self.logs = logs


class ServiceUnavailable(InfraError):
    """A server does not answer its own protocol (connection refused, auth failed, ...)."""

    def __init__(self, message: str, *, service: str) -> None:
        super().__init__(message)
        self.service = service


class CredentialsRejected(ServiceUnavailable):
    """A server answers but refuses the password the settings hold.

    Not worth waiting for: usually its data volume was made with another
    password than the one in ``.env``.
    """


class ManifestError(ConfigError):
    """The manifest is invalid; the message names the file, service and field."""


class GatewayConfigRejected(ConfigError):
    """nginx (``nginx -t``) refused a generated gateway config; the running one is kept."""


class ProvisionError(InfraError):
    """A database, role, Redis DB or bucket could not be provisioned."""


class SeedError(InfraError):
    """Seed data could not be loaded; the message names the file (and line).

    Nothing of the service's seed for that store was kept.
    """


class AllocationConflict(ProvisionError):
    """A Redis DB number (or other unique resource) is already another service's."""


class CapacityExhausted(ProvisionError):
    """Every Redis DB number the server offers is allocated."""


class LiveKitError(InfraError):
    """LiveKit's server API refused a call for a reason other than credentials.

    ``code`` is the server's Twirp error code (``"not_found"``,
    ``"invalid_argument"``, ...) so callers can branch on it without parsing
    the message; ``status`` is the HTTP status it came with.
    """

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class WebhookRejected(InfraError):
    """A webhook request is not provably from our LiveKit server; do not act on it.

    The message says which check failed (missing header, signature, key,
    expiry, body hash, body format); an HTTP endpoint should answer 401.
    """


class InvalidObjectKey(ConfigError):
    """An object key, or one segment of it, is unsafe or outside the allowed prefixes.

    ``key`` is the key (or segment) that was refused, so a web handler can
    answer 400 naming it.
    """

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


class BackupError(InfraError):
    """A backup, restore or restore drill failed.

    The message names the target and dataset (database, Redis DB, bucket) and
    carries the tail of the failing program's error output. A failed backup
    leaves no archive behind; a failed restore leaves the original data as it
    was.
    """


class BackupCorrupt(BackupError):
    """An archive does not match its manifest: a file is missing, extra, or altered.

    ``path`` is the archive directory; the message names the file with the
    expected and actual size or checksum. Nothing was restored from it.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class RestoreRefused(InfraError):
    """A restore was refused before it changed anything.

    Either it would overwrite existing data (restore into a new name with
    ``--into``, or pass ``--force`` to replace the data), or the archive
    asks for what a restore never does on an archive's word: a role with
    SUPERUSER and the like, membership of a privileged role, or an
    unencrypted archive where a passphrase says to expect an encrypted one.
    The message says which, and what to do.
    """

    exit_code = 3
