"""Drive the compose stack through python-on-whales.

:class:`Stack` is the only place that talks to Docker. It knows which
services exist, checks ports before starting them, waits for health, and
turns Compose failures into :mod:`infra_lib.errors` with the failing
service's last log lines attached.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from infra_lib._extras import optional_sdks
from infra_lib.errors import (
    ConfigError,
    DockerUnavailable,
    ForeignProject,
    ServiceUnhealthy,
    StackError,
)
from infra_lib.stack.ports import check_ports_free
from infra_lib.stack.services import SERVICE_NAMES, ServiceSpec, service_spec, services_for
from infra_lib.stack.settings import StackSettings
from infra_lib.stack.upstate import UpState, fingerprint, read_state, write_state

if TYPE_CHECKING:
    from python_on_whales import Container, DockerClient

__all__ = ["ALLOW_FOREIGN_ENV", "ServiceStatus", "Stack", "StackPaths"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: How many log lines of a failing service an error carries.
LOG_TAIL = 30

#: Seconds ``up`` gives a running container Compose called unhealthy to pass
#: a check again: a few healthcheck intervals (2-3 s in the compose files).
HEALTH_GRACE = 10.0

#: Set to 1 to let tasks act on a project whose containers another checkout made.
ALLOW_FOREIGN_ENV = "INFRA_ALLOW_FOREIGN_PROJECT"

# Labels Compose puts on every container it creates.
_PROJECT_LABEL = "com.docker.compose.project"
_DIR_LABEL = "com.docker.compose.project.working_dir"


@dataclass(frozen=True, slots=True)
class StackPaths:
    """Where the compose files and the env file of a checkout live."""

    root: Path
    env_file: Path

    @property
    def compose_file(self) -> Path:
        """The top-level compose file that includes one file per component."""
        return self.root / "compose" / "compose.yaml"

    @classmethod
    def for_root(cls, root: Path, env_file: Path | None = None) -> StackPaths:
        """Paths of the checkout at ``root`` (``.env`` beside it by default)."""
        root = root.resolve()
        return cls(root=root, env_file=(env_file or root / ".env").resolve())


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One service as Docker sees it right now."""

    name: str
    state: str
    health: str
    endpoint: str

    @property
    def ok(self) -> bool:
        """Running, and healthy when it has a healthcheck."""
        return self.state == "running" and self.health in ("healthy", "none")


class Stack:
    """The compose project of one checkout.

    Construct it at the edge with settings from :func:`load_stack_settings`;
    it creates its Docker client lazily, so building a ``Stack`` costs
    nothing until a method needs Docker.
    """

    def __init__(
        self,
        settings: StackSettings,
        paths: StackPaths,
        *,
        extra_env_files: Sequence[Path] = (),
        extra_compose_files: Sequence[Path] = (),
    ) -> None:
        self.settings = settings
        self.paths = paths
        #: More env files for Compose after ``.env`` (e.g. the observability
        #: layer's private secrets file); those that do not exist are skipped.
        self.extra_env_files = tuple(extra_env_files)
        #: Compose files merged over the stack's own, in order (e.g. a
        #: temporary override that mounts one more volume).
        self.extra_compose_files = tuple(extra_compose_files)
        self._client: DockerClient | None = None
        self._client_env_files: tuple[Path, ...] = ()
        #: The services the last :meth:`up` created, recreated or started
        #: (not those Compose found running with their config unchanged).
        self.last_started: frozenset[str] = frozenset()
        self._listing: dict[str, _PsRow] | None = None

    @property
    def project_name(self) -> str:
        """The Compose project name; several checkouts differ by it."""
        return self.settings.compose_project_name

    @property
    def docker(self) -> DockerClient:
        """The python-on-whales client bound to this project."""
        # An extra env file written after the client was made (the layer's
        # secrets, on the first `up`) must reach Compose: make it again then.
        extra = tuple(p for p in self.extra_env_files if p.is_file())
        if self._client is None or extra != self._client_env_files:
            self._client = self._make_client(self.settings.profiles)
            self._client_env_files = extra
        return self._client

    def _make_client(self, profiles: Sequence[str]) -> DockerClient:
        with optional_sdks("the compose stack"):
            from python_on_whales import DockerClient

        extra = [p for p in self.extra_env_files if p.is_file()]
        return DockerClient(
            compose_files=[self.paths.compose_file, *self.extra_compose_files],
            compose_project_name=self.project_name,
            compose_env_files=[self.paths.env_file, *extra],
            compose_project_directory=self.paths.compose_file.parent,
            compose_profiles=list(profiles),
        )

    # -- queries ---------------------------------------------------------

    def resolve(self, services: Sequence[str] | None) -> list[ServiceSpec]:
        """The specs of ``services`` (all when empty), rejecting unknown names.

        "All" is the core services plus those of the switched-on profiles
        (``INFRA_PROFILES``); a profile's service may be named only while its
        profile is on, since Compose would not start it otherwise.
        """
        if not services:
            return list(services_for(self.settings.profiles))
        specs = [service_spec(name) for name in services]
        for spec in specs:
            if spec.profile is not None and spec.profile not in self.settings.profiles:
                raise ConfigError(
                    f"service {spec.name!r} belongs to the {spec.profile!r} layer, which is "
                    f"off; turn it on with `inv up --with {spec.profile}`"
                )
        return specs

    def status(
        self,
        services: Sequence[str] | None = None,
        *,
        containers: Mapping[str, Container] | None = None,
        rows: Mapping[str, _PsRow] | None = None,
    ) -> list[ServiceStatus]:
        """State and health of each service; ``missing`` when it has no container.

        ``containers`` (from :meth:`containers`) or ``rows`` (from the
        engine's list) saves the query when the caller has it already.
        """
        specs = self.resolve(services)
        if containers is not None:
            seen = {
                name: (str(c.state.status), _health(c.state.health))
                for name, c in containers.items()
            }
        else:
            seen = {
                name: (row.state, row.health)
                for name, row in (rows if rows is not None else self._ps()).items()
            }
        result = []
        for spec in specs:
            state, health = seen.get(spec.name, ("missing", "-"))
            result.append(ServiceStatus(spec.name, state, health, spec.endpoint(self.settings)))
        return result

    def logs(self, service: str | None = None, *, tail: int | None = None) -> str:
        """The recent logs of one service (or all), as text."""
        services = [service_spec(service).name] if service else []
        return str(
            self._call(
                lambda: self.docker.compose.logs(
                    services, tail=None if tail is None else str(tail), no_log_prefix=False
                )
            )
        )

    def follow_logs(self, service: str | None = None, *, tail: int | None = 100) -> Iterator[str]:
        """Stream logs as lines until interrupted."""
        services = [service_spec(service).name] if service else []
        stream = self._call(
            lambda: self.docker.compose.logs(
                services, tail=None if tail is None else str(tail), follow=True, stream=True
            )
        )
        for _source, chunk in stream:
            yield chunk.decode(errors="replace").rstrip("\n")

    # -- actions ---------------------------------------------------------

    def up(
        self,
        services: Sequence[str] | None = None,
        *,
        wait: bool = True,
        timeout: int = 180,
        on_output: Callable[[str], None] | None = None,
    ) -> list[ServiceStatus]:
        """Start ``services`` (all by default) and wait until they are healthy.

        Running services whose configuration is unchanged are left alone (a
        fast no-op, without running Compose when nothing it reads changed
        since the last ``up``: see :mod:`infra_lib.stack.upstate`); changed
        ones are recreated. Ports of
        services that are not running are checked first, so a taken port is
        reported with the variable that moves it. On failure raises
        :class:`ServiceUnhealthy` naming the service, with its last log lines.
        """
        specs = self.resolve(services)
        from infra_lib.stack.secrets import missing_secret_files

        missing = missing_secret_files(self.settings.secrets_dir, [s.name for s in specs])
        if missing:
            raise ConfigError(
                f"the secret files {', '.join(str(p) for p in missing)} do not exist, and "
                "Compose hands them to the containers. Run `inv init --force` to write them "
                "(it keeps every secret it can find; a new one will not match a data volume "
                "made with an old one)."
            )
        names = [s.name for s in specs]
        rows = self._ps()
        before = {s.name: s for s in self.status(names, rows=rows)}
        current = self._fingerprint()
        state = read_state(self._state_file)
        if state is not None and _unchanged(state, current, names, rows):
            self.last_started = frozenset()
            return [before[n] for n in names]
        check_ports_free(self.settings, [s for s in specs if before[s.name].state != "running"])

        started: set[str] = set()
        deadline = time.monotonic() + timeout
        try:
            self._compose_up(names, wait=wait, timeout=timeout, on_output=on_output, into=started)
        except subprocess.CalledProcessError as exc:
            if not (wait and "is unhealthy" in (exc.output or "") and self._health_passes(names)):
                self._raise_for_failure(exc, names)
            # The containers Compose gave up on have passed a check since:
            # once more, so that whatever waited on them starts too.
            left = max(int(deadline - time.monotonic()), 10)
            try:
                self._compose_up(names, wait=wait, timeout=left, on_output=on_output, into=started)
            except subprocess.CalledProcessError as again:
                self._raise_for_failure(again, names)
        finally:
            self.last_started = frozenset(started)
        after = self._ps()
        if wait:
            self._record(current, state, names, after)
        return self.status(names, rows=after)

    def _compose_up(
        self,
        names: list[str],
        *,
        wait: bool,
        timeout: int,
        on_output: Callable[[str], None] | None,
        into: set[str],
    ) -> None:
        """One ``docker compose up``; the services it started are added to ``into``."""
        for line in self._stream(self._up_command(names, wait=wait, timeout=timeout)):
            logger.debug("compose: %s", line)
            into.update(self._started_in(line))
            if on_output is not None:
                on_output(line)

    def _health_passes(self, names: list[str]) -> bool:
        """Whether every running container is healthy within :data:`HEALTH_GRACE`.

        ``up --wait`` fails as soon as a running container's last healthcheck
        failed, though Docker goes on checking: a container that was paused
        or overloaded a moment ago is usually healthy at its next check. A
        container that is not running (exited, restarting) fails at once.
        """
        end = time.monotonic() + HEALTH_GRACE
        while True:
            statuses = self.status(names)
            if any(s.state not in ("running", "missing", "created") for s in statuses):
                return False
            if all(s.ok for s in statuses if s.state == "running"):
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.5)

    def _up_command(self, names: list[str], *, wait: bool, timeout: int) -> list[str]:
        """``docker compose ... up`` as python-on-whales would spell it for this project."""
        command = ["compose"]
        for path in (self.paths.compose_file, *self.extra_compose_files):
            command += ["--file", str(path)]
        for profile in self.settings.profiles:
            command += ["--profile", profile]
        for path in (self.paths.env_file, *(p for p in self.extra_env_files if p.is_file())):
            command += ["--env-file", str(path)]
        command += ["--project-name", self.project_name]
        command += ["--project-directory", str(self.paths.compose_file.parent)]
        command += ["up", "--detach", "--pull", "missing"]
        if wait:
            command += ["--wait", "--wait-timeout", str(timeout)]
        return [*command, *names]

    def _docker_command(self) -> str:
        """The path of the ``docker`` CLI; an error saying how to install it otherwise."""
        import shutil

        docker = shutil.which("docker")
        if docker is None:
            self.check_engine()  # says how to install it
            raise StackError("the `docker` command is not installed")
        return docker

    def _stream(self, args: list[str]) -> Iterator[str]:
        """The output lines of a long ``docker`` command as they come.

        Run directly rather than through python-on-whales, whose import costs
        0.3 s of every ``up``. A failure raises
        :class:`subprocess.CalledProcessError` carrying the whole output.
        """
        docker = self._docker_command()
        lines: list[str] = []
        with subprocess.Popen(
            [docker, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        ) as process:
            for raw in process.stdout or ():
                line = raw.rstrip()
                if line:
                    lines.append(line)
                    yield line
        if process.returncode != 0:
            output = "\n".join(lines)
            raise subprocess.CalledProcessError(
                process.returncode, ["docker", *args], output=output, stderr=output
            )

    @property
    def _state_file(self) -> Path:
        return self.paths.root / "env" / self.project_name / "up-state.json"

    def _fingerprint(self) -> str:
        return fingerprint(
            project=self.project_name,
            profiles=self.settings.profiles,
            compose_files=[self.paths.compose_file, *self.extra_compose_files],
            env_files=[self.paths.env_file, *self.extra_env_files],
            secrets_dir=self.settings.secrets_dir,
        )

    def _record(
        self, current: str, state: UpState | None, names: list[str], rows: Mapping[str, _PsRow]
    ) -> None:
        """Remember the containers ``up`` left healthy, for the next no-op check."""
        # Services not in this `up` keep their entries only if nothing changed
        # since theirs: they were not recreated with the new configuration.
        kept = dict(state.containers) if state and state.fingerprint == current else {}
        for name in names:
            row = rows.get(name)
            if row is not None and row.ok:
                kept[name] = (row.id, row.image)
            else:
                kept.pop(name, None)
        try:
            write_state(self._state_file, UpState(current, kept))
        except OSError as exc:
            # Without the record the next `up` runs Compose: slower, not wrong.
            logger.debug("could not record the stack's state: %s", exc)

    def _started_in(self, line: str) -> list[str]:
        """The service a Compose progress line (``Container infra-redis-1  Recreated``)
        says was created, recreated or started; none for ``Running``."""
        words = line.split()
        if len(words) < 3 or words[0] != "Container":
            return []
        if words[-1] not in _START_WORDS:
            return []
        name = words[1].removeprefix(f"{self.project_name}-")
        service, _, number = name.rpartition("-")
        return [service] if service and number.isdigit() else []

    def down(self, *, volumes: bool = False, timeout: int = 30) -> None:
        """Stop and remove the containers; remove the named volumes only if asked.

        Every profile counts here, switched on or not, so that a layer
        switched off while running, and its volumes with ``volumes``, go too.
        """
        from infra_lib.stack.settings import KNOWN_PROFILES

        client = self._make_client(KNOWN_PROFILES)
        self._state_file.unlink(missing_ok=True)
        self._call(lambda: client.compose.down(volumes=volumes, timeout=timeout, quiet=True))

    def remove(self, services: Sequence[str]) -> None:
        """Stop and remove the containers of ``services``; their volumes are kept."""
        names = list(services)
        if names:
            self._call(lambda: self.docker.compose.rm(names, stop=True, volumes=False))

    def stop(self, services: Sequence[str] | None = None) -> None:
        """Stop services without removing them (their state is kept)."""
        names = [s.name for s in self.resolve(services)]
        self._call(lambda: self.docker.compose.stop(names))

    def foreign_directory(self) -> str | None:
        """The directory this project's containers were created from, if not this checkout.

        Compose labels every container with the project directory it ran in;
        a second checkout that uses the same project name finds the first
        one's containers here. ``None`` when there are no containers, when
        they are this checkout's, or when no Docker engine answers (then
        there is nothing to act on anyway).
        """
        import shutil

        if shutil.which("docker") is None:
            return None
        ours = self.paths.compose_file.parent
        try:
            rows = self._ps()
        except StackError as exc:
            logger.debug("cannot list the containers of %s: %s", self.project_name, exc)
            return None
        for where in sorted({row.directory for row in rows.values()}):
            # A path spelled differently (a symlink) may still be this checkout.
            if where and Path(where).resolve() != ours:
                return where
        return None

    @contextmanager
    def one_listing(self) -> Iterator[None]:
        """Within the block every query reads the same engine list, taken once.

        A status is one moment: asking the engine again for the project
        check, the table and the volumes would cost a run each.
        """
        self._listing = {}
        try:
            yield
        finally:
            self._listing = None

    def ensure_own(
        self, *, allow_foreign: bool = False, environ: Mapping[str, str] | None = None
    ) -> None:
        """Raise :class:`ForeignProject` if another checkout's containers carry this project.

        Call it before anything that changes the stack or its data (up, down,
        provision, backup, restore): acting on the other checkout's stack
        would recreate it with this checkout's secrets or delete its volumes.
        ``allow_foreign``, or :data:`ALLOW_FOREIGN_ENV` set to ``1`` in
        ``environ`` (the process environment at the edge), skips the check.
        """
        allowed = (environ or {}).get(ALLOW_FOREIGN_ENV, "").strip().lower()
        if allow_foreign or allowed in ("1", "true", "yes"):
            return
        where = self.foreign_directory()
        if where is not None:
            raise ForeignProject(
                f"compose project {self.project_name!r} belongs to another checkout: its "
                f"containers were created from {where}, not {self.paths.compose_file.parent}. "
                f"Give this checkout its own COMPOSE_PROJECT_NAME (and ports) in "
                f"{self.paths.env_file}, or pass --allow-foreign-project (or set "
                f"{ALLOW_FOREIGN_ENV}=1) to act on that stack anyway."
            )

    def container(self, service: str) -> Container:
        """The container of ``service`` in this project; StackError when it has none."""
        name = service_spec(service).name
        found = self._containers().get(name)
        if found is None:
            raise StackError(
                f"service {name!r} has no container in project {self.project_name!r}; "
                "start it with `inv up`"
            )
        return found

    def running_ids(self, services: Sequence[str]) -> dict[str, str]:
        """The container IDs of those of ``services`` that are running (not paused)."""
        rows = self._ps()
        return {s: rows[s].id for s in services if s in rows and rows[s].state == "running"}

    def containers(self) -> dict[str, Container]:
        """Each service's container in this project, stopped ones included (one query)."""
        return self._containers()

    def volumes(self) -> list[str]:
        """Names of the Docker volumes that belong to this project."""
        found = self._call(
            lambda: self.docker.volume.list(
                filters=[("label", f"{_PROJECT_LABEL}={self.project_name}")]
            )
        )
        return sorted(v.name for v in found)

    # -- internals -------------------------------------------------------

    def _containers(self) -> dict[str, Container]:
        from python_on_whales import Container

        config = self.docker.client_config
        return {
            name: Container(config, row.id, is_immutable_id=True)
            for name, row in self._ps().items()
        }

    def _ps(self) -> dict[str, _PsRow]:
        """Each service's container, stopped ones included, from one ``docker ps`` call.

        python-on-whales inspects a container again on every attribute read
        (its cache lasts 10 ms), so a status of ten services cost some forty
        ``docker inspect`` runs; ``compose ps`` loads the whole project first
        (0.3 s here). The engine's own list, filtered by Compose's labels,
        has what a status needs in 0.02 s. One-off containers (``compose
        run``) are not the service's.
        """
        if self._listing:
            return self._listing
        text = self.docker_output(
            [
                "container",
                "list",
                "--all",
                "--no-trunc",
                "--filter",
                f"label={_PROJECT_LABEL}={self.project_name}",
                "--filter",
                "label=com.docker.compose.oneoff=False",
                "--format",
                '{{.ID}}\t{{.Label "com.docker.compose.service"}}\t{{.State}}\t{{.Status}}'
                f'\t{{{{.Image}}}}\t{{{{.Label "{_DIR_LABEL}"}}}}',
            ]
        )
        rows = _parse_ps(text)
        if self._listing is not None:
            self._listing = rows
        return rows

    def docker_output(self, args: list[str]) -> str:
        """The output of a short ``docker`` command (a list, an exec), run directly.

        Importing python-on-whales costs half a second here; a status or a
        project check needs only the engine's list, so it runs the CLI as
        python-on-whales would (same environment, so the same engine).
        """
        docker = self._docker_command()
        try:
            done = subprocess.run(
                [docker, *args], capture_output=True, text=True, check=False, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.check_engine()
            raise StackError(f"docker {args[0]} failed: {exc}") from exc
        if done.returncode != 0:
            self.check_engine()
            raise StackError(
                f"docker {' '.join(args[:2])} failed for project {self.project_name!r}: "
                f"{done.stderr.strip()}"
            )
        return done.stdout

    def _call(self, action: Callable[[], _T]) -> _T:
        from python_on_whales.exceptions import DockerException

        try:
            return action()
        except DockerException as exc:
            self._raise_docker(exc)

    def _raise_docker(self, exc: Exception) -> NoReturn:
        self.check_engine()
        stderr = getattr(exc, "stderr", "") or ""
        raise StackError(
            f"docker compose failed for project {self.project_name!r}: {stderr.strip() or exc}"
        ) from exc

    def check_engine(self) -> None:
        """Raise :class:`DockerUnavailable` unless the engine and Compose v2 answer."""
        import shutil

        from python_on_whales.exceptions import DockerException

        if shutil.which("docker") is None:
            raise DockerUnavailable(
                "the `docker` command is not installed. Install Docker Engine (or Docker "
                "Desktop), or on Debian run `sudo scripts/bootstrap-docker.sh`."
            )
        try:
            self.docker.version()
        except DockerException as exc:
            raise DockerUnavailable(
                "the Docker engine does not answer (is dockerd running, and may this user "
                f"use its socket?). Docker said: {(exc.stderr or '').strip()}"
            ) from exc
        try:
            self.docker.compose.version()
        except DockerException as exc:
            raise DockerUnavailable(
                "the Docker Compose v2 plugin is missing (`docker compose version` fails). "
                "Install it, e.g. `scripts/bootstrap-docker.sh` on Debian."
            ) from exc

    def _raise_for_failure(self, exc: Exception, names: list[str]) -> NoReturn:
        self.check_engine()
        try:
            statuses = self.status(names)
        except StackError:
            statuses = []
        bad = [s for s in statuses if not s.ok]
        stderr = (getattr(exc, "stderr", "") or "").strip()
        if not bad or all(s.state == "missing" for s in bad):
            # Nothing was created: an image, network or config problem, not health.
            raise StackError(
                f"docker compose up failed for project {self.project_name!r}: {stderr or exc}"
            ) from exc
        first = bad[0]
        try:
            logs = self.logs(first.name, tail=LOG_TAIL)
        except StackError:
            logs = ""
        summary = ", ".join(f"{s.name} ({s.state}/{s.health})" for s in bad)
        raise ServiceUnhealthy(
            f"{first.name} did not become healthy: {summary}. "
            f"Its last log lines are below; `inv logs {first.name}` shows more.",
            service=first.name,
            logs=logs,
        ) from exc


def require_known(services: Sequence[str]) -> None:
    """Raise ConfigError for any unknown service name."""
    unknown = [s for s in services if s not in SERVICE_NAMES]
    if unknown:
        raise ConfigError(
            f"unknown service(s) {', '.join(unknown)}; known services: {', '.join(SERVICE_NAMES)}"
        )


# Compose's progress words for a container it makes or starts (not "Running").
_START_WORDS = frozenset(
    {"Create", "Creating", "Created", "Recreate", "Recreated", "Start", "Starting", "Started"}
)


@dataclass(frozen=True, slots=True)
class _PsRow:
    id: str
    state: str
    health: str
    # The image reference the container was made from; the engine shows the
    # image ID instead once that tag names another image.
    image: str = ""
    # The project directory Compose ran in (another checkout's, possibly).
    directory: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "running" and self.health in ("healthy", "none")


def _unchanged(state: UpState, current: str, names: list[str], rows: Mapping[str, _PsRow]) -> bool:
    """Whether Compose would leave every one of ``names`` as it is."""
    if state.fingerprint != current:
        return False
    for name in names:
        row = rows.get(name)
        if row is None or not row.ok or state.containers.get(name) != (row.id, row.image):
            return False
    return True


def _parse_ps(text: str) -> dict[str, _PsRow]:
    """``ID<TAB>service<TAB>state<TAB>status[<TAB>image<TAB>directory]`` lines by service.

    Health is only in the status text: ``Up 2 minutes (healthy)``,
    ``(unhealthy)``, ``(health: starting)``; none without a healthcheck.
    """
    rows: dict[str, _PsRow] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) < 4 or not fields[0] or not fields[1]:
            continue
        container, service, state, status = fields[:4]
        image, directory = (*fields[4:6], "", "")[:2]
        health = "none"
        if "(healthy)" in status:
            health = "healthy"
        elif "(unhealthy)" in status:
            health = "unhealthy"
        elif "(health: starting)" in status:
            health = "starting"
        rows[service] = _PsRow(container, state or "unknown", health, image, directory)
    return rows


def _health(health: Any) -> str:
    return str(health.status) if health is not None and health.status else "none"
