"""Where ``pg_dump`` and ``pg_restore`` run: in the stack's container, on the host, or in an image.

On the compose stack the tools run inside the postgres container
(``docker compose exec -T postgres ...``), so the client is always the
server's version, and the password never enters an argument list: the
container's shell reads its secret file and hands it to the tool as
``PGPASSWORD``. Against a managed server the host's tools are used when
they are new enough, else those of the PostgreSQL image, with the password
in the child's environment or a private passfile only.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from infra_lib.backup.streams import Command, capture
from infra_lib.errors import BackupError
from infra_lib.postgres.config import PostgresConfig

if TYPE_CHECKING:
    from infra_lib.stack.compose import Stack
    from infra_lib.stack.settings import StackSettings

__all__ = [
    "ContainerPgTools",
    "ImagePgTools",
    "LocalPgTools",
    "PgTools",
    "check_client",
    "choose_managed_tools",
]

logger = logging.getLogger(__name__)

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class PgTools(Protocol):
    """Runs ``pg_dump``, ``pg_dumpall`` and ``pg_restore`` against one server."""

    @property
    def kind(self) -> str:
        """``"container"`` (the stack's), ``"image"`` (a one-off container) or ``"local"``."""

    def command(
        self, program: str, args: Sequence[str], *, what: str, database: str | None = None
    ) -> Command: ...


# The container supplies user and password (its secret file, or the
# variable of an older compose file), so neither is in the argument list;
# "$@" passes program and arguments without re-quoting.
_CONTAINER_SCRIPT = (
    'PGPASSWORD="${POSTGRES_PASSWORD:-$(cat "${POSTGRES_PASSWORD_FILE:-'
    '/run/secrets/postgres-password}")}" '
    'PGUSER="${POSTGRES_USER:-postgres}" PGHOST=127.0.0.1 PGPORT=5432 exec "$@"'
)


@dataclass(frozen=True, slots=True)
class ContainerPgTools:
    """The tools inside the compose stack's postgres container."""

    compose_argv: tuple[str, ...]
    service: str = "postgres"
    kind: str = "container"

    @classmethod
    def from_stack(cls, stack: Stack) -> ContainerPgTools:
        """Reuse the exact ``docker compose --file ... --project-name ...`` of ``stack``."""
        argv = stack.docker.compose.docker_compose_cmd
        return cls(tuple(str(part) for part in argv))

    def command(
        self, program: str, args: Sequence[str], *, what: str, database: str | None = None
    ) -> Command:
        env_args: tuple[str, ...] = ("--env", f"PGDATABASE={database}") if database else ()
        argv = (
            *self.compose_argv,
            "exec",
            "-T",
            *env_args,
            self.service,
            "sh",
            "-c",
            _CONTAINER_SCRIPT,
            "sh",
            program,
            *args,
        )
        return Command(argv, what)


def _libpq_env(cfg: PostgresConfig, database: str | None) -> dict[str, str]:
    """Where and as whom the tools connect, as libpq's variables (no password)."""
    return {
        "PGHOST": cfg.host,
        "PGPORT": str(cfg.port),
        "PGUSER": cfg.user,
        "PGSSLMODE": cfg.sslmode,
        "PGCONNECT_TIMEOUT": str(cfg.connect_timeout),
        "PGAPPNAME": cfg.application_name,
        "PGDATABASE": database or cfg.dbname,
    }


@dataclass(frozen=True, slots=True)
class LocalPgTools:
    """The tools found in ``PATH`` (or ``bindir``), for a server outside the stack."""

    config: PostgresConfig
    bindir: Path | None = None
    kind: str = "local"

    def command(
        self, program: str, args: Sequence[str], *, what: str, database: str | None = None
    ) -> Command:
        search = str(self.bindir) if self.bindir is not None else None
        path = shutil.which(program, path=search)
        if path is None:
            where = f"in {self.bindir}" if self.bindir else "in PATH"
            raise BackupError(
                f"{program} is not installed {where}; install the PostgreSQL client tools "
                "(the server's major version or newer) to back up a server outside the stack."
            )
        cfg = self.config
        env = _libpq_env(cfg, database)
        if cfg.password is not None:
            env["PGPASSWORD"] = cfg.password
        if cfg.sslrootcert:
            env["PGSSLROOTCERT"] = cfg.sslrootcert
        return Command((path, *args), what, env)


#: Where :class:`ImagePgTools` mounts the password file and the CA bundle.
_MOUNT = "/run/infra-pg"


@dataclass(frozen=True, slots=True)
class ImagePgTools:
    """The tools of a PostgreSQL image, each run in a one-off container (``docker run --rm``).

    For a server outside the stack whose major version is newer than the
    host's tools: the image brings tools of its own version. The container
    shares the host's network, so it reaches the server as the host does.
    The password reaches it as a libpq password file, mounted read-only from
    ``private_dir`` (0700, the file 0600), so it is in no argument and in no
    container's environment (``docker inspect`` shows only the path).
    """

    config: PostgresConfig
    image: str
    private_dir: Path
    docker: str = "docker"
    kind: str = "image"

    def _passfile(self) -> Path:
        from infra_lib.stack.envfile import make_private_dirs, write_private_file

        cfg = self.config
        make_private_dirs(self.private_dir)
        path = self.private_dir / "pg-tools.pgpass"

        def escaped(value: str) -> str:
            return value.replace("\\", "\\\\").replace(":", "\\:")

        line = ":".join(
            [escaped(cfg.host), str(cfg.port), "*", escaped(cfg.user), escaped(cfg.password or "")]
        )
        if not path.is_file() or path.read_text(encoding="utf-8") != line + "\n":
            write_private_file(path, line + "\n")
        return path

    def command(
        self, program: str, args: Sequence[str], *, what: str, database: str | None = None
    ) -> Command:
        cfg = self.config
        mounts = ["--volume", f"{self._passfile()}:{_MOUNT}/pgpass:ro"]
        env = {**_libpq_env(cfg, database), "PGPASSFILE": f"{_MOUNT}/pgpass"}
        if cfg.sslrootcert:
            mounts += ["--volume", f"{cfg.sslrootcert}:{_MOUNT}/ca.pem:ro"]
            env["PGSSLROOTCERT"] = f"{_MOUNT}/ca.pem"
        settings = [part for key, value in env.items() for part in ("--env", f"{key}={value}")]
        argv = (
            self.docker, "run", "--rm", "--interactive", "--network", "host",
            "--user", "0", *mounts, *settings, "--entrypoint", program, self.image, *args,
        )  # fmt: skip
        return Command(argv, what)


def choose_managed_tools(
    config: PostgresConfig, settings: StackSettings, server_major: int
) -> PgTools:
    """The tools for a server outside the stack, as ``POSTGRES_TOOLS`` says (see settings)."""
    image = ImagePgTools(
        config, settings.postgres_tools_image or settings.postgres_image, settings.secrets_dir
    )
    local = LocalPgTools(config)
    if settings.postgres_tools == "image":
        return image
    if settings.postgres_tools == "local":
        return local
    if shutil.which("pg_dump") is not None and _client_version(local, "pg_dump")[1] >= server_major:
        return local
    logger.info(
        "postgres: the host has no pg_dump %s or newer; using the tools of %s",
        server_major,
        image.image,
    )
    return image


def _client_version(tools: PgTools, program: str) -> tuple[str, int]:
    text = capture(tools.command(program, ["--version"], what=f"{program} --version")).strip()
    match = _VERSION.search(text)
    if match is None:
        raise BackupError(f"cannot tell the version of {program} from {text!r}")
    return text, int(match[1])


def check_client(tools: PgTools, program: str, server_major: int) -> tuple[str, int]:
    """``program``'s version text and major version; BackupError if older than the server."""
    if tools.kind == "container":
        # The tools ship with the server in its own image: same version by construction.
        return f"{program} of the server's container", server_major
    text, major = _client_version(tools, program)
    if major < server_major:
        if isinstance(tools, ImagePgTools):
            raise BackupError(
                f"{program} of the image {tools.image} is version {major} ({text}), older than "
                f"the server's {server_major}. Set POSTGRES_TOOLS_IMAGE to a PostgreSQL "
                f"{server_major} image (or newer)."
            )
        raise BackupError(
            f"{program} is version {major} ({text}), older than the server's "
            f"{server_major}; an older {program} cannot handle a newer server. Install the "
            f"PostgreSQL {server_major} client tools (or newer) and put them first in PATH, "
            "or set POSTGRES_TOOLS=image to run those of a PostgreSQL image."
        )
    return text, major
