"""How to reach one LiveKit server: the URL clients dial, the API URL, the key pair.

Built once at the edge (a task, a fixture, a service's start-up) and passed
in. Importing this module does not import livekit-api, so a service can hold
a config without paying for the SDK until it mints a token or calls the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from infra_lib.errors import ConfigError

if TYPE_CHECKING:
    from infra_lib.stack.settings import StackSettings

__all__ = ["MAX_NAME_LENGTH", "MIN_SECRET_LENGTH", "LiveKitConfig", "check_name"]

#: livekit-server refuses a secret shorter than this outside ``--dev`` mode.
MIN_SECRET_LENGTH = 32

#: LiveKit sets no documented limit on room names or identities; they end up
#: in URLs, logs, webhook bodies and every participant's room state, so a
#: bound keeps a runaway value (a whole JSON blob as an identity) out.
MAX_NAME_LENGTH = 256

_CLIENT_SCHEMES = {"ws": "http", "wss": "https"}
_API_SCHEMES = frozenset({"http", "https"})


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a usable room name or identity, else raise ConfigError."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"LiveKit {kind} must be a non-empty string, not {value!r}.")
    if len(value) > MAX_NAME_LENGTH:
        raise ConfigError(
            f"LiveKit {kind} is {len(value)} characters long; the limit here is "
            f"{MAX_NAME_LENGTH}. Use an id, not a description."
        )
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveKitConfig:
    """Connection settings of one LiveKit server (the compose one or LiveKit Cloud).

    ``url`` is what browsers and mobile clients dial (``ws://`` or ``wss://``);
    ``api_url`` is where the server API is called from the backend, and
    defaults to ``url`` with ``ws`` swapped for ``http``. Set it when the
    backend reaches the server by another name (a cluster-internal host).

    ``api_secret`` is left out of ``repr``. A secret under 32 characters is
    refused, as livekit-server itself refuses it, unless
    ``allow_short_secret`` is set (``--dev`` servers use ``secret``).
    ``timeout`` bounds each server API call, in seconds.
    """

    url: str
    api_key: str
    api_secret: str = field(repr=False)
    api_url: str = ""
    allow_short_secret: bool = False
    timeout: float = 10.0

    def __post_init__(self) -> None:
        client = urlsplit(self.url)
        if client.scheme not in _CLIENT_SCHEMES or not client.netloc:
            raise ConfigError(
                f"LiveKit url {self.url!r} is not a ws:// or wss:// URL; clients dial it, "
                "e.g. ws://127.0.0.1:7880 or wss://<project>.livekit.cloud."
            )
        if not self.api_url:
            api_url = _CLIENT_SCHEMES[client.scheme] + self.url[len(client.scheme) :]
            object.__setattr__(self, "api_url", api_url.rstrip("/"))
        server = urlsplit(self.api_url)
        if server.scheme not in _API_SCHEMES or not server.netloc:
            raise ConfigError(
                f"LiveKit api_url {self.api_url!r} is not an http:// or https:// URL."
            )
        if not self.api_key or not self.api_key.strip():
            raise ConfigError("LiveKit API key is empty; set LIVEKIT_API_KEY.")
        if not self.api_secret:
            raise ConfigError("LiveKit API secret is empty; set LIVEKIT_API_SECRET.")
        if len(self.api_secret) < MIN_SECRET_LENGTH and not self.allow_short_secret:
            raise ConfigError(
                f"LiveKit API secret is {len(self.api_secret)} characters long; livekit-server "
                f"refuses secrets under {MIN_SECRET_LENGTH} outside --dev mode. Set a longer "
                "LIVEKIT_API_SECRET (`inv init` generates one), or pass "
                "allow_short_secret=True for a --dev server."
            )
        if not self.timeout > 0:
            raise ConfigError(f"LiveKit timeout must be positive, not {self.timeout}.")

    @classmethod
    def from_stack(cls, settings: StackSettings) -> LiveKitConfig:
        """The compose stack's LiveKit as seen from this host, with its API key pair."""
        return cls(
            url=f"ws://{settings.url_host}:{settings.livekit_http_port}",
            api_key=settings.required("livekit_api_key"),
            api_secret=settings.secret("livekit_api_secret"),
        )
