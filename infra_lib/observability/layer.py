"""Whether the observability layer is on, and where its generated files live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra_lib.errors import ConfigError
from infra_lib.stack.settings import StackSettings

__all__ = ["PROFILE", "LayerPaths", "is_enabled", "require_enabled"]

#: The Compose profile of ``compose/observability.yaml``.
PROFILE = "observability"


def is_enabled(settings: StackSettings) -> bool:
    """Whether ``INFRA_PROFILES`` switches the layer on."""
    return PROFILE in settings.profiles


def require_enabled(settings: StackSettings) -> None:
    """Raise :class:`ConfigError` saying how to turn the layer on, unless it is on."""
    if not is_enabled(settings):
        raise ConfigError(
            "the observability layer is off in this stack. Turn it on with "
            "`inv up --with observability` (remembered as INFRA_PROFILES=observability "
            "in .env)."
        )


@dataclass(frozen=True, slots=True)
class LayerPaths:
    """The layer's files under a project's env folder (``env/<project>/``).

    ``compose/observability.yaml`` mounts :attr:`scrape_dir` into the metrics
    store, and the task runner hands :attr:`secrets_env` to Compose.
    """

    env_dir: Path

    @property
    def root(self) -> Path:
        """``env/<project>/observability``: private (mode 0700)."""
        return self.env_dir / "observability"

    @property
    def scrape_dir(self) -> Path:
        """Mounted read-only at ``/etc/infra-observability`` in the metrics store."""
        return self.root / "scrape"

    @property
    def scrape_file(self) -> Path:
        """The generated scrape config (``-promscrape.config``)."""
        return self.scrape_dir / "scrape.yml"

    @property
    def secrets_env(self) -> Path:
        """Monitoring passwords and MinIO's token as ``KEY=value`` lines (mode 0600)."""
        return self.root / "secrets.env"

    def make_dirs(self) -> None:
        """Create the folders, private to this user."""
        for path in (self.env_dir, self.root, self.scrape_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
