"""Whether the gateway is on, where its files live, and the public URLs it serves."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infra_lib.errors import ConfigError
from infra_lib.stack.settings import StackSettings

if TYPE_CHECKING:
    from infra_lib.manifest import ServiceManifest

__all__ = [
    "PROFILE",
    "SERVICE",
    "GatewayEnv",
    "GatewayPaths",
    "PublicUrls",
    "is_enabled",
    "locked",
    "require_enabled",
]

#: The Compose profile and service of ``compose/gateway.yaml``.
PROFILE = "gateway"
SERVICE = "gateway"

#: Where ``compose/gateway.yaml`` mounts :attr:`GatewayPaths.root`.
CONTAINER_ROOT = "/etc/nginx/infra"


def is_enabled(settings: StackSettings) -> bool:
    """Whether ``INFRA_PROFILES`` switches the gateway on."""
    return PROFILE in settings.profiles


def require_enabled(settings: StackSettings) -> None:
    """Raise :class:`ConfigError` saying how to turn the gateway on, unless it is on."""
    if not is_enabled(settings):
        raise ConfigError(
            "the gateway is off in this stack. Turn it on with `inv up --with gateway` "
            "(remembered as INFRA_PROFILES=gateway in .env)."
        )


@dataclass(frozen=True, slots=True)
class GatewayPaths:
    """The gateway's files under a project's env folder (``env/<project>/``).

    :attr:`root` is mounted read-only into the gateway; the CA's key lives
    beside it in :attr:`ca_dir`, never inside the container.
    """

    env_dir: Path

    @property
    def root(self) -> Path:
        """``env/<project>/gateway``: private (mode 0700), mounted at /etc/nginx/infra."""
        return self.env_dir / "gateway"

    @property
    def config_file(self) -> Path:
        """The nginx config the running gateway reads."""
        return self.root / "nginx.conf"

    def check_dirs(self) -> list[Path]:
        """Scratch folders (``check-*``) where candidates are checked; none outside a check."""
        return sorted(self.root.glob("check-*"))

    @property
    def tls_dir(self) -> Path:
        """The gateway's certificate and key (``cert.pem``, ``key.pem``)."""
        return self.root / "tls"

    @property
    def cert_file(self) -> Path:
        """The leaf certificate, followed by the CA certificate (a full chain)."""
        return self.tls_dir / "cert.pem"

    @property
    def key_file(self) -> Path:
        """The leaf's private key."""
        return self.tls_dir / "key.pem"

    @property
    def ca_dir(self) -> Path:
        """``env/<project>/ca``: the local certificate authority."""
        return self.env_dir / "ca"

    @property
    def ca_cert(self) -> Path:
        """The CA certificate: what clients and trust stores are given."""
        return self.ca_dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The CA's private key; it signs the gateway's certificates."""
        return self.ca_dir / "ca-key.pem"

    def make_dirs(self) -> None:
        """Create the folders, private to this user."""
        for path in (self.env_dir, self.root, self.tls_dir, self.ca_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.chmod(0o700)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created 0600): concurrent runs take turns.

    Two ``inv provision`` runs must not interleave making the CA (a leaf
    signed by one CA beside the other's certificate) or replacing the config.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class PublicUrls:
    """Where clients reach the stack through the gateway."""

    base: str
    s3: str
    livekit: str
    http: str

    @classmethod
    def from_settings(cls, settings: StackSettings) -> PublicUrls:
        """The URLs for ``GATEWAY_HOST`` and the gateway's ports."""
        host = settings.gateway_host
        https = "" if settings.gateway_https_port == 443 else f":{settings.gateway_https_port}"
        plain = "" if settings.gateway_http_port == 80 else f":{settings.gateway_http_port}"
        return cls(
            base=f"https://{host}{https}",
            s3=f"https://s3.{host}{https}",
            livekit=f"wss://livekit.{host}{https}",
            http=f"http://{host}{plain}",
        )


@dataclass(frozen=True, slots=True)
class GatewayEnv:
    """What provisioning adds to a service's env file while the gateway is on.

    Added beside the direct endpoints, not instead of them (and all under
    ``GATEWAY_``, apart from each backend's own keys): the backend
    keeps talking to MinIO and LiveKit directly, and hands browsers these
    (presign for ``GATEWAY_S3_ENDPOINT``, dial ``GATEWAY_LIVEKIT_URL``).
    """

    urls: PublicUrls
    ca_file: Path

    def values_for(self, service: ServiceManifest) -> dict[str, str]:
        """``GATEWAY_URL`` and ``GATEWAY_CA_FILE``, plus the storage and LiveKit URLs it uses."""
        values = {"GATEWAY_URL": self.urls.base, "GATEWAY_CA_FILE": str(self.ca_file)}
        if service.storage is not None:
            values["GATEWAY_S3_ENDPOINT"] = self.urls.s3
        if service.livekit is not None:
            values["GATEWAY_LIVEKIT_URL"] = self.urls.livekit
        return values
