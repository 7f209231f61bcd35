"""Invoke tasks: thin wrappers that parse flags and call infra_lib.

Run ``inv --list`` for the tasks and ``inv --help TASK`` for each one's flags.
Every task turns an :class:`infra_lib.InfraError` into a clear message and a
non-zero exit; none holds logic of its own.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task
from invoke.tasks import task as _invoke_task

if TYPE_CHECKING:
    from rich.console import Console

    from infra_lib.backup.model import DrillReport, ProgressCallback
    from infra_lib.livekit.config import LiveKitConfig
    from infra_lib.manifest import Manifest
    from infra_lib.provisioning import ProvisionReport
    from infra_lib.smoke.runner import SmokeReport
    from infra_lib.stack.compose import ServiceStatus, Stack
    from infra_lib.stack.probes import ProbeResult
    from infra_lib.stack.settings import StackSettings

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "infra.toml"

#: Flags that reveal secrets, skip a confirmation or destroy data: long form only,
#: so a mistyped or guessed short flag can never trigger one.
NO_SHORT_FLAG = frozenset(
    {
        "show_secrets",
        "force",
        "yes",
        "volumes",
        "new_secrets",
        "allow_foreign_project",
    }
)


class _Task(Task[Callable[..., None]]):
    """Invoke's task with short flags only for harmless options.

    Invoke gives each flag the first free character of its name as a short
    flag: ``env --show-secrets`` got ``-h``, so ``inv env SERVICE -h``
    (meant as help) printed every password, and ``token --can-publish-data``
    got ``--``. ``-h`` stays help's, ``-`` is never one, and the flags in
    :data:`NO_SHORT_FLAG` have none.
    """

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts: dict[str, Any] = super().arg_opts(name, default, taken_names | {"h", "-"})
        if name in NO_SHORT_FLAG:
            opts["names"] = opts["names"][:1]
        return opts


def task(**kwargs: Any) -> Callable[[Callable[..., None]], Task[Callable[..., None]]]:
    """``invoke.task`` with :class:`_Task`: every task here is declared through it."""
    decorator: Callable[[Callable[..., None]], Task[Callable[..., None]]] = _invoke_task(
        klass=_Task, **kwargs
    )
    return decorator


def _env_dir(project: str) -> Path:
    # One folder per compose project, so two env files never share settings.
    return ROOT / "env" / project


def _console() -> Console:
    from rich.console import Console

    # Plain, wide output when piped (CI logs), so rows are not wrapped.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        logging.basicConfig(
            level=level, handlers=[RichHandler(show_path=False)], format="%(message)s"
        )
    else:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@contextmanager
def _errors() -> Iterator[None]:
    """Turn InfraError into `Exit` with its message; keep the traceback out of sight."""
    from infra_lib.errors import InfraError, ServiceUnhealthy

    try:
        yield
    except InfraError as exc:
        message = f"error: {exc}"
        if isinstance(exc, ServiceUnhealthy) and exc.logs:
            message += f"\n--- last log lines of {exc.service} ---\n{exc.logs.rstrip()}"
        raise Exit(message, code=exc.exit_code) from exc


def _env_file(env_file: str | None) -> Path:
    return Path(env_file).resolve() if env_file else ROOT / ".env"


def _stack(env_file: str | None, *, guard: bool = True, allow_foreign: bool = False) -> Stack:
    """The checkout's stack; with ``guard``, refused if another checkout made its containers.

    Every task that reads the env files re-tightens them here, with a warning.
    """
    from infra_lib.observability.layer import LayerPaths
    from infra_lib.stack.compose import Stack, StackPaths
    from infra_lib.stack.envfile import tighten_env_files
    from infra_lib.stack.secrets import sync_secret_files
    from infra_lib.stack.settings import load_stack_settings

    paths = StackPaths.for_root(ROOT, _env_file(env_file))
    _warn(tighten_env_files(paths.env_file))
    settings = load_stack_settings(paths.env_file, environ=os.environ)
    _warn(tighten_env_files(service_dir=_env_dir(settings.compose_project_name)))
    # A checkout whose .env still holds the passwords keeps working.
    _warn(sync_secret_files(paths.env_file, settings.secrets_dir))
    # The observability layer's secrets reach Compose as a second env file.
    secrets_env = LayerPaths(_env_dir(settings.compose_project_name)).secrets_env
    stack = Stack(settings, paths, extra_env_files=[secrets_env])
    if guard:
        stack.ensure_own(allow_foreign=allow_foreign, environ=os.environ)
    return stack


def _warn(messages: Sequence[str]) -> None:
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)


def _status_table(
    title: str, rows: Sequence[ServiceStatus], extra: dict[str, str] | None = None
) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in ("service", "state", "health", "endpoint"):
        table.add_column(column)
    if extra is not None:
        table.add_column("check")
    for row in rows:
        style = "green" if row.ok else "red"
        cells = [row.name, f"[{style}]{row.state}[/]", f"[{style}]{row.health}[/]", row.endpoint]
        if extra is not None:
            cells.append(extra.get(row.name, ""))
        table.add_row(*cells)
    _console().print(table)


def _init_env(
    target: Path, force: bool, say: Callable[[str], None], *, new_secrets: bool = False
) -> None:
    from infra_lib.stack.envfile import SECRET_KEYS, mask, write_env_file

    result = write_env_file(
        ROOT / ".env.example", target, force=force, new_secrets=new_secrets, environ=os.environ
    )
    say(f"wrote {result.path} (mode 0600)")
    if result.secret_files:
        say(
            f"wrote the secret files {', '.join(result.secret_files)} to {result.secrets_dir} "
            "(folder 0700, files 0600)"
        )
    if result.backup is not None:
        say(f"kept the previous file as {result.backup}")
        say(f"kept {len(result.kept)} values of the previous file (project name, ports, ...)")
        kept_secrets = sorted(SECRET_KEYS.intersection(result.kept))
        if kept_secrets:
            say(
                f"kept the secrets {', '.join(kept_secrets)}: the data volumes were made with "
                "them (--new-secrets replaces them)"
            )
    for key in result.generated:
        say(f"  generated {key}={mask('x')}")
    if result.replaced:
        say(
            f"replaced {', '.join(result.replaced)}: existing data volumes still hold the old "
            "values (PostgreSQL keeps its admin password in its data directory), so a stack "
            "started with the new file cannot log in to them. Run `inv down --volumes --yes` "
            f"to start empty, or copy the old values back from {result.backup}."
        )


@task(
    help={
        "force": "Rewrite an existing .env from .env.example, keeping every value it holds "
        "(project name, ports, secrets, extra variables); the old file is kept as "
        ".env.bak-<time>.",
        "new-secrets": "With --force: also replace the secrets that have a value. Data volumes "
        "keep the old passwords.",
        "env-file": "Write this file instead of .env at the repository root.",
        "migrate-secrets": "Move the secrets an older .env holds into their files "
        "(env/<project>/secrets/), values unchanged, and delete them from .env; nothing else "
        "is rewritten.",
        "auto-ports": "Move every port of the stack (its optional layers included) that is "
        "taken on this machine, or published by another project's container, to a free one "
        "and write it to .env (made first if missing); other values are kept. For a second "
        "checkout next to a first.",
    }
)
def init(
    c: Context,
    force: bool = False,
    new_secrets: bool = False,
    env_file: str | None = None,
    migrate_secrets: bool = False,
    auto_ports: bool = False,
) -> None:
    """Write .env from .env.example and the stack's secrets to their own files (mode 0600)."""
    with _errors():
        if new_secrets and not force:
            raise Exit("--new-secrets replaces the secrets of an existing .env; add --force", 2)
        if migrate_secrets:
            if force or new_secrets or auto_ports:
                raise Exit(
                    "--migrate-secrets keeps every value; it takes no --force or --auto-ports", 2
                )
            _migrate_secrets(_env_file(env_file), print)
            return
        target = _env_file(env_file)
        if not (auto_ports and target.exists() and not force):
            _init_env(target, force, print, new_secrets=new_secrets)
            _init_tls(target, print)
        if auto_ports:
            _auto_ports(target, print)


def _docker_ports(stack: Stack) -> tuple[set[int], set[int]]:
    """Host ports published by other projects' containers (running or stopped), and by ours.

    Refuses a project name another checkout's containers carry (their ports
    would count as ours). Empty sets when the engine does not answer: the
    ports bound right now are still checked.
    """
    from infra_lib.errors import ServiceUnavailable

    others: set[int] = set()
    ours: set[int] = set()
    try:
        stack.ensure_own(environ=os.environ)
        containers = stack.docker.container.list(all=True)
    except ServiceUnavailable:
        _warn(["Docker does not answer: only ports bound right now count as taken"])
        return others, ours
    for container in containers:
        labels = container.config.labels or {}
        mine = labels.get("com.docker.compose.project") == stack.project_name
        bindings = container.host_config.port_bindings or {}
        for binds in bindings.values():
            for bind in binds or []:
                if bind.host_port:
                    (ours if mine else others).add(int(bind.host_port))
    return others, ours - others


def _auto_ports(target: Path, say: Callable[[str], None]) -> None:
    from infra_lib.stack.compose import Stack, StackPaths
    from infra_lib.stack.envfile import set_env_value
    from infra_lib.stack.ports import free_port_plan
    from infra_lib.stack.services import services_for
    from infra_lib.stack.settings import KNOWN_PROFILES, load_stack_settings

    settings = load_stack_settings(target, environ=os.environ)
    others, ours = _docker_ports(Stack(settings, StackPaths.for_root(ROOT, target)))
    plan = free_port_plan(
        settings, services_for(list(KNOWN_PROFILES)), also_taken=others, owned=ours
    )
    if not plan:
        say(f"every port of the stack is free here; {target} unchanged")
        return
    for variable, port in plan.items():
        old = getattr(settings, variable.lower())
        set_env_value(target, variable, str(port))
        say(f"moved {variable} from {old} to {port}")
    say(f"wrote {len(plan)} port(s) to {target}; `inv up` uses them")


def _migrate_secrets(env_path: Path, say: Callable[[str], None]) -> None:
    from infra_lib.stack.secrets import migrate_env_secrets
    from infra_lib.stack.settings import load_stack_settings

    settings = load_stack_settings(env_path, environ=os.environ)
    result = migrate_env_secrets(env_path, settings.secrets_dir)
    for copy in result.scrubbed:
        say(f"removed the secrets that are now in files from the older copy {copy}")
    for copy, names in result.still_held:
        _warn(
            [
                f"{copy} still holds {', '.join(names)} with values that differ from the files "
                "(from before `--new-secrets`?). Delete the copy once no volume needs them."
            ]
        )
    if not result.removed_from_env:
        say(f"{env_path} holds no secrets; nothing to move (they are in {result.directory})")
        return
    if result.written:
        say(
            f"wrote {', '.join(result.written)} to {result.directory} (mode 0600), values unchanged"
        )
    say(f"removed {', '.join(result.removed_from_env)} from {env_path}")
    say("running containers keep working; `inv up` recreates them to read the files")


def _init_tls(env_path: Path, say: Callable[[str], None]) -> None:
    """The local CA (kept once made) and the gateway's certificate, renewed when stale."""
    from infra_lib.gateway.layer import GatewayPaths
    from infra_lib.gateway.tls import ensure_tls
    from infra_lib.stack.settings import load_stack_settings

    settings = load_stack_settings(env_path, environ=os.environ)
    paths = GatewayPaths(_env_dir(settings.compose_project_name))
    result = ensure_tls(settings, paths)
    if result.ca == "created":
        say(f"created the local CA {paths.ca_cert} (mode 0600); `inv trust` shows how to trust it")
    if result.leaf != "unchanged":
        why = f" ({result.reason})" if result.reason not in ("", "missing") else ""
        say(f"{result.leaf} the gateway certificate {paths.cert_file}{why}")


def _switch_profiles(
    env_file: str | None,
    on: Sequence[str],
    off: Sequence[str],
    say: Callable[[str], None],
    *,
    allow_foreign: bool = False,
) -> Stack:
    """Write INFRA_PROFILES for --with/--without; stop the layers switched off."""
    from infra_lib.stack.envfile import set_env_value
    from infra_lib.stack.services import PROFILE_SERVICES

    stack = _stack(env_file, allow_foreign=allow_foreign)
    if not on and not off:
        return stack
    both = set(on) & set(off)
    if both:
        raise Exit(f"--with and --without both name {', '.join(sorted(both))}", code=2)
    wanted = [p for p in (*stack.settings.profiles, *on) if p not in off]
    value = ",".join(dict.fromkeys(wanted))
    if os.environ.get("INFRA_PROFILES") not in (None, "", value):
        raise Exit(
            "INFRA_PROFILES is set in the environment and would override .env; "
            "unset it to use --with/--without",
            code=2,
        )
    # Validated by the settings before anything is written or stopped.
    from infra_lib.stack.settings import load_stack_settings

    load_stack_settings(stack.paths.env_file, environ={"INFRA_PROFILES": value})
    dropped = [p for p in stack.settings.profiles if p in off]
    if dropped:
        names = [spec.name for p in dropped for spec in PROFILE_SERVICES.get(p, ())]
        stack.remove(names)
        say(f"stopped the {', '.join(dropped)} layer ({', '.join(names)}); its volumes are kept")
    if set_env_value(stack.paths.env_file, "INFRA_PROFILES", value):
        say(f"INFRA_PROFILES={value} written to {stack.paths.env_file}")
    return _stack(env_file, allow_foreign=allow_foreign)


def _observability_up(stack: Stack, manifest: str | None) -> None:
    """Write the layer's credentials and checked scrape config before Compose starts it."""
    from infra_lib.manifest import load_manifest
    from infra_lib.observability.apply import prepare
    from infra_lib.observability.layer import PROFILE
    from infra_lib.stack.services import PROFILE_SERVICES

    prepared = prepare(
        stack,
        load_manifest(Path(manifest).resolve() if manifest else MANIFEST),
        _env_dir(stack.project_name),
    )
    if prepared.credentials_changed:
        # Compose copies secrets into a container only when it creates it.
        stack.remove([spec.name for spec in PROFILE_SERVICES[PROFILE]])


def _gateway_apply(stack: Stack, manifest: str | None, *, dry_run: bool = False) -> ProvisionReport:
    """Certificates and checked config in place, and a running gateway reloaded."""
    from infra_lib.gateway.apply import prepare, reload
    from infra_lib.manifest import load_manifest
    from infra_lib.provisioning import ProvisionReport

    prepared = prepare(
        stack,
        load_manifest(Path(manifest).resolve() if manifest else MANIFEST),
        _env_dir(stack.project_name),
        dry_run=dry_run,
    )
    if (prepared.config_changed or prepared.tls_changed) and not dry_run:
        reload(stack)
    return ProvisionReport(prepared.rows, dry_run)


def _observability_provision(
    stack: Stack, manifest: str | None, *, dry_run: bool, postgres: bool, redis: bool
) -> ProvisionReport:
    """Monitoring role and ACL user on the servers, config reloaded, as a report."""
    from infra_lib.manifest import load_manifest
    from infra_lib.observability.apply import apply_credentials, prepare, reload
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.provisioning import ProvisionReport
    from infra_lib.redis.config import RedisConfig

    prepared = prepare(
        stack,
        load_manifest(Path(manifest).resolve() if manifest else MANIFEST),
        _env_dir(stack.project_name),
        dry_run=dry_run,
    )
    rows = apply_credentials(
        prepared.credentials,
        postgres=PostgresConfig.from_stack(stack.settings) if postgres else None,
        redis=RedisConfig.from_stack(stack.settings) if redis else None,
        postgres_db=stack.settings.postgres_db,
        dry_run=dry_run,
    )
    if prepared.scrape_changed and not dry_run:
        reload(stack)
    return ProvisionReport((*prepared.rows, *rows), dry_run)


@task(
    iterable=["service", "with_", "without"],
    help={
        "service": "Start only this service (repeatable). Default: all five, plus the "
        "switched-on layers' services.",
        "with": "Switch a layer on and remember it in .env (INFRA_PROFILES), e.g. "
        "--with observability (repeatable).",
        "without": "Switch a layer off (its containers are removed, its volumes kept) and "
        "remember that in .env (repeatable).",
        "wait": "Wait for every service to be healthy (default). --no-wait returns at once.",
        "timeout": "Seconds to wait for health before failing (default 180).",
        "env-file": "Use this env file instead of .env.",
        "verbose": "Show Compose's output and debug logs.",
        "provision": "Provision the manifest once healthy (default). --no-provision skips it.",
        "allow-foreign-project": "Act even if the project's containers were created from "
        "another checkout (also INFRA_ALLOW_FOREIGN_PROJECT=1).",
    },
)
def up(
    c: Context,
    service: list[str] | None = None,
    wait: bool = True,
    timeout: int = 180,
    env_file: str | None = None,
    verbose: bool = False,
    provision: bool = True,
    with_: list[str] | None = None,
    without: list[str] | None = None,
    allow_foreign_project: bool = False,
) -> None:
    """Start the stack, wait until it is healthy, and print where each service answers."""
    from infra_lib.gateway.layer import is_enabled as gateway_enabled
    from infra_lib.observability.layer import is_enabled

    _setup_logging(verbose)
    deadline = time.monotonic() + timeout
    with _errors():
        path = _env_file(env_file)
        if not path.exists():
            print(f"{path} does not exist yet; creating it with generated secrets")
            _init_env(path, False, print)
        stack = _switch_profiles(
            env_file, with_ or [], without or [], print, allow_foreign=allow_foreign_project
        )
        names = [s.name for s in stack.resolve(service)]
        if wait:
            from infra_lib.stack.probes import preload

            preload(names)
        observability = is_enabled(stack.settings)
        if observability:
            _observability_up(stack, None)
        gateway = gateway_enabled(stack.settings) and "gateway" in names
        say: Callable[[str], None] | None = print if verbose else None
        started: set[str] = set()
        if gateway:
            # nginx looks MinIO and LiveKit up when it loads its config (and
            # nginx -t does too): they start first, then the checked config
            # and certificates are written, then the gateway starts. When
            # everything already runs healthy, one Compose run does.
            others = [n for n in names if n != "gateway"]
            if others and not all(s.ok for s in stack.status(names)):
                stack.up(others, wait=wait, timeout=timeout, on_output=say)
                started |= stack.last_started
            gateway_report = _gateway_apply(stack, None)
        statuses = stack.up(names, wait=wait, timeout=timeout, on_output=say)
        started |= stack.last_started
        if gateway and started & {"minio", "livekit"}:
            from infra_lib.gateway.apply import reload as reload_gateway

            # A recreated MinIO or LiveKit container has a new address.
            reload_gateway(stack)
        checks: dict[str, str] = {}
        if wait:
            for result in _probe_until(stack, names, deadline):
                checks[result.service] = f"{result.detail} ({result.seconds * 1000:.0f} ms)"
        _status_table(f"stack {stack.project_name!r}", statuses, checks if wait else None)
        started = set(names)
        if provision and wait and {"postgres", "redis", "minio"} & started:
            report = _provision(
                stack,
                None,
                dry_run=False,
                postgres="postgres" in started,
                redis="redis" in started,
                storage="minio" in started,
            )
            _report_table(report)
        if provision and wait and observability:
            _report_table(
                _observability_provision(
                    stack,
                    None,
                    dry_run=False,
                    postgres="postgres" in started,
                    redis="redis" in started,
                )
            )
        if gateway:
            _report_table(gateway_report)


def _probe_until(stack: Stack, names: list[str], deadline: float) -> list[ProbeResult]:
    """Each service's protocol check, retried within what is left of ``inv up --timeout``."""
    from infra_lib.errors import InfraError, ServiceUnavailable, ServiceUnhealthy
    from infra_lib.stack.compose import LOG_TAIL
    from infra_lib.stack.probes import wait_for

    # A healthy container may still refuse the check (a volume made with
    # another password, say): leave it a few seconds even when time is short.
    remaining = max(deadline - time.monotonic(), 5.0)
    try:
        return wait_for(stack.settings, names, timeout=remaining)
    except ServiceUnavailable as exc:
        try:
            logs = stack.logs(exc.service, tail=LOG_TAIL)
        except InfraError:
            logs = ""
        raise ServiceUnhealthy(
            f"{exc}. Its last log lines are below; `inv logs {exc.service}` shows more.",
            service=exc.service,
            logs=logs,
        ) from exc


@task(
    help={
        "volumes": "Also delete the named data volumes (needs --yes too). Data is lost.",
        "yes": "Confirm --volumes.",
        "env-file": "Use this env file instead of .env.",
        "allow-foreign-project": "Act even if the project's containers were created from "
        "another checkout (also INFRA_ALLOW_FOREIGN_PROJECT=1).",
    }
)
def down(
    c: Context,
    volumes: bool = False,
    yes: bool = False,
    env_file: str | None = None,
    allow_foreign_project: bool = False,
) -> None:
    """Stop and remove the containers. Data volumes are kept unless --volumes --yes."""
    with _errors():
        if volumes and not yes:
            raise Exit(
                "refusing to delete the data volumes without --yes "
                "(`inv down --volumes --yes`); nothing was stopped.",
                code=2,
            )
        stack = _stack(env_file, allow_foreign=allow_foreign_project)
        stack.down(volumes=volumes)
        kept = "" if volumes else "; data volumes kept"
        print(f"stack {stack.project_name!r} is down{kept}")


@task(
    iterable=["service"],
    help={
        "service": "Show only this service (repeatable).",
        "probe": "Also check each service's own protocol from this host.",
        "env-file": "Use this env file instead of .env.",
    },
)
def status(
    c: Context, service: list[str] | None = None, probe: bool = False, env_file: str | None = None
) -> None:
    """Print each service's state, health and endpoint; exit 1 if any is not healthy.

    A service whose data volume is full (postgres, redis, minio) counts as not
    healthy: it still answers, but its writes fail.
    """
    with _errors():
        stack = _stack(env_file, guard=False)
        with stack.one_listing():
            _status(stack, service, probe=probe)


def _status(stack: Stack, service: list[str] | None, *, probe: bool) -> None:
    """The status table of one engine listing; Exit 1 naming what is not healthy."""
    foreign = stack.foreign_directory()
    if foreign is not None:
        _warn(
            [
                f"project {stack.project_name!r} was created from {foreign}, not this "
                "checkout: these are another checkout's containers"
            ]
        )
    from infra_lib.chaos.disk import full_volumes

    rows = stack.status(service)
    checks: dict[str, str] | None = None
    failed = [r.name for r in rows if not r.ok]
    full = full_volumes(stack, [r.name for r in rows if r.ok])
    if probe:
        from infra_lib.errors import ServiceUnavailable
        from infra_lib.stack.probes import probe as run_probe

        checks = {}
        for row in rows:
            try:
                checks[row.name] = run_probe(stack.settings, row.name).detail
            except ServiceUnavailable as exc:
                checks[row.name] = f"FAILED: {exc}"
                failed.append(row.name)
    _status_table(f"stack {stack.project_name!r}", rows, checks)
    for name, usage in full.items():
        _warn(
            [
                f"{name}: disk full: its data volume ({usage.path}) has "
                f"{usage.describe()}; its writes fail with 'No space left on device'. "
                "Free space on the volume (`inv chaos --recover` if a disk-full "
                "experiment was left behind)"
            ]
        )
        failed.append(name)
    if failed:
        raise Exit(f"not healthy: {', '.join(sorted(set(failed)))}", code=1)


@task(
    positional=["service"],
    help={
        "service": "One service's logs (default: all); `inv logs postgres` works too.",
        "follow": "Keep streaming until Ctrl-C.",
        "tail": "Lines of history to show (default 100).",
        "query": "Search the log store instead (observability layer): a LogsQL query, "
        "e.g. 'error _time:1h'; with SERVICE, that service's lines only; newest first, "
        "at most --tail lines.",
        "env-file": "Use this env file instead of .env.",
    },
)
def logs(
    c: Context,
    service: str | None = None,
    follow: bool = False,
    tail: int = 100,
    query: str | None = None,
    env_file: str | None = None,
) -> None:
    """Show the logs of the stack or of one service."""
    with _errors():
        stack = _stack(env_file, guard=False)
        if query is not None:
            from infra_lib.observability.layer import require_enabled
            from infra_lib.observability.logstore import LogStore, format_record, search_query

            require_enabled(stack.settings)
            logsql = search_query(query, project=stack.project_name, service=service)
            for record in LogStore.from_stack(stack.settings).query(logsql, limit=tail):
                print(format_record(record))
            return
        if follow:
            try:
                for line in stack.follow_logs(service, tail=tail):
                    print(line, flush=True)
            except KeyboardInterrupt:
                return
        else:
            print(stack.logs(service, tail=tail), end="")


def _provision(
    stack: Stack,
    services: list[str] | None,
    *,
    dry_run: bool,
    manifest: str | None = None,
    postgres: bool = True,
    redis: bool = True,
    storage: bool = True,
    secret_files: bool = False,
    rotate: bool = False,
    through_proxy: bool = False,
) -> ProvisionReport:
    from infra_lib.gateway.layer import GatewayEnv, GatewayPaths, PublicUrls
    from infra_lib.gateway.layer import is_enabled as gateway_enabled
    from infra_lib.livekit.config import LiveKitConfig
    from infra_lib.manifest import load_manifest
    from infra_lib.observability.layer import is_enabled
    from infra_lib.observability.otlp import OtlpEndpoints
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.provisioning import provision as run_provision
    from infra_lib.redis.config import RedisConfig
    from infra_lib.storage.config import S3Config

    plan = load_manifest(Path(manifest).resolve() if manifest else MANIFEST)
    chosen = [plan.service(name) for name in services] if services else list(plan)
    # The servers are the same either way; only where the env file (and this
    # provisioning) reaches them changes.
    backends = _proxied(stack.settings) if through_proxy else stack.settings

    def needed(backend: str) -> bool:
        # A target that has only some servers (a managed PostgreSQL, say) is
        # never asked for the credentials of one its services do not use.
        return any(getattr(s, backend) is not None for s in chosen)

    return run_provision(
        plan,
        env_dir=_env_dir(stack.project_name),
        postgres=PostgresConfig.from_stack(backends) if postgres and needed("postgres") else None,
        redis=RedisConfig.from_stack(backends) if redis and needed("redis") else None,
        storage=S3Config.from_stack(backends) if storage and needed("storage") else None,
        livekit=LiveKitConfig.from_stack(stack.settings) if needed("livekit") else None,
        otlp=OtlpEndpoints.from_stack(stack.settings) if is_enabled(stack.settings) else None,
        services=services,
        dry_run=dry_run,
        gateway=GatewayEnv(
            PublicUrls.from_settings(stack.settings),
            GatewayPaths(_env_dir(stack.project_name)).ca_cert,
        )
        if gateway_enabled(stack.settings)
        else None,
        secret_files=secret_files,
        rotate=rotate,
    )


def _proxied(settings: StackSettings) -> StackSettings:
    """``settings`` with PostgreSQL, Redis and MinIO reached through the chaos proxy."""
    from infra_lib.chaos import proxied_settings

    if "chaos" not in settings.profiles:
        raise Exit(
            "--through-proxy needs the failure experiments' proxy: `inv up --with chaos` first",
            2,
        )
    if settings.postgres_host or settings.redis_host:
        raise Exit(
            "--through-proxy: the proxy sits in front of this stack's own servers, and "
            "POSTGRES_HOST/REDIS_HOST point elsewhere",
            2,
        )
    for backend in ("postgres", "redis", "minio"):
        settings = proxied_settings(settings, backend)
    return settings


def _report_table(report: ProvisionReport) -> None:
    from rich.table import Table

    title = "provisioning plan (dry run: nothing changed)" if report.dry_run else "provisioning"
    table = Table(title=title)
    for column in ("service", "resource", "name", "change", "detail"):
        table.add_column(column)
    colours = {"created": "green", "changed": "yellow", "planned": "cyan", "unchanged": "dim"}
    for row in report.rows:
        change = f"[{colours[row.change]}]{row.change}[/]"
        name = os.path.relpath(row.name) if row.resource == "env file" else row.name
        table.add_row(row.service, row.resource, name, change, row.detail)
    _console().print(table)
    created = sum(r.change == "created" for r in report.rows)
    changed = sum(r.change == "changed" for r in report.rows)
    planned = sum(r.change == "planned" for r in report.rows)
    unchanged = sum(r.change == "unchanged" for r in report.rows)
    print(f"created {created}, changed {changed}, planned {planned}, unchanged {unchanged}")


@task(
    help={
        "service": "Provision only this service (repeatable). Default: every service.",
        "dry-run": "Show the plan; change nothing.",
        "manifest": "Manifest file (default: infra.toml).",
        "env-file": "Use this env file instead of .env.",
        "allow-foreign-project": "Act even if the project's containers were created from "
        "another checkout (also INFRA_ALLOW_FOREIGN_PROJECT=1).",
        "secret-files": "Also write each service's secrets as a folder of files, one per "
        "variable (env/<project>/<service>.secrets/), for platforms that mount secrets as files.",
        "through-proxy": "Provision this service (repeatable) with its env file pointing at "
        "the chaos layer's proxy for PostgreSQL, Redis and MinIO, so `inv chaos` network "
        "faults reach it. `inv provision --service NAME` points it back.",
    },
    iterable=["service", "through_proxy"],
)
def provision(
    c: Context,
    service: list[str] | None = None,
    dry_run: bool = False,
    manifest: str | None = None,
    env_file: str | None = None,
    allow_foreign_project: bool = False,
    secret_files: bool = False,
    through_proxy: list[str] | None = None,
) -> None:
    """Create each service's database, role, Redis DB and storage user; write its env file.

    With --through-proxy NAME, NAME's env file reaches PostgreSQL, Redis and
    MinIO through the failure experiments' proxy (`inv up --with chaos`).
    """
    from infra_lib.gateway.layer import is_enabled as gateway_enabled
    from infra_lib.observability.layer import is_enabled

    with _errors():
        stack = _stack(env_file, allow_foreign=allow_foreign_project)
        if through_proxy:
            both = sorted(set(service or ()) & set(through_proxy))
            if both:
                raise Exit(
                    f"{', '.join(both)}: give a service to --service or to "
                    "--through-proxy, not both",
                    2,
                )
            _report_table(
                _provision(
                    stack,
                    through_proxy,
                    dry_run=dry_run,
                    manifest=manifest,
                    secret_files=secret_files,
                    through_proxy=True,
                )
            )
            if not service:
                return
        report = _provision(
            stack, service, dry_run=dry_run, manifest=manifest, secret_files=secret_files
        )
        _report_table(report)
        if is_enabled(stack.settings) and not service:
            _report_table(
                _observability_provision(
                    stack, manifest, dry_run=dry_run, postgres=True, redis=True
                )
            )
        if gateway_enabled(stack.settings) and not service:
            _report_table(_gateway_apply(stack, manifest, dry_run=dry_run))


@task(
    help={
        "service": "The service whose credentials to replace (a name from infra.toml).",
        "dry-run": "Show what would change; change nothing.",
        "manifest": "Manifest file (default: infra.toml).",
        "env-file": "Use this env file instead of .env.",
        "allow-foreign-project": "Act even if the project's containers were created from "
        "another checkout (also INFRA_ALLOW_FOREIGN_PROJECT=1).",
    },
)
def rotate(
    c: Context,
    service: str,
    dry_run: bool = False,
    manifest: str | None = None,
    env_file: str | None = None,
    allow_foreign_project: bool = False,
) -> None:
    """Give one service new PostgreSQL, Redis and storage credentials; the old ones stop working.

    Its env file (and its secret files, if it has them) gets the new values
    before any server does, so a rotation that stops halfway loses nothing:
    run it again, or `inv provision`, to finish.
    """
    from infra_lib.provisioning import ROTATED_KEYS

    with _errors():
        stack = _stack(env_file, allow_foreign=allow_foreign_project)
        report = _provision(stack, [service], dry_run=dry_run, manifest=manifest, rotate=True)
        _report_table(report)
        if dry_run:
            return
        (env,) = report.env_files
        rotated = sorted(k for k in ROTATED_KEYS if k in env.values)
        if not rotated:
            print(f"{service} has no PostgreSQL, Redis or storage credentials of its own.")
            return
        logins = []
        if "PGPASSWORD" in env.values:
            logins.append(f"PostgreSQL role {env.values['PGUSER']}")
        if "REDIS_PASSWORD" in env.values:
            logins.append(f"Redis user {env.values['REDIS_USERNAME']}")
        if "S3_SECRET_ACCESS_KEY" in env.values:
            logins.append(f"storage user {env.values['S3_ACCESS_KEY_ID']}")
        print(
            f"rotated {', '.join(rotated)} of {service}: {', '.join(logins)} now accept only the "
            f"new values.\n{service} must reload {_shown(env.path)} (restart it): connections it "
            "has open stay open until then, and new ones need the new values."
        )


@task(
    help={
        "action": "save, restore or rm.",
        "name": "The snapshot's name; for restore, `latest` is the newest snapshot.",
        "service": "Only this service (repeatable); default: every service of the manifest "
        "(save) or of the snapshot (restore).",
        "manifest": "Manifest file (default: infra.toml).",
        "env-file": "Use this env file instead of .env.",
        "allow-foreign-project": "Act even if the project's containers were created from "
        "another checkout (also INFRA_ALLOW_FOREIGN_PROJECT=1).",
    },
    iterable=["service"],
)
def snapshot(
    c: Context,
    action: str,
    name: str,
    service: list[str] | None = None,
    manifest: str | None = None,
    env_file: str | None = None,
    allow_foreign_project: bool = False,
) -> None:
    """Named local snapshots of the services' data: save, restore or rm NAME.

    Covers each service's PostgreSQL database (a copy made by the server,
    CREATE DATABASE ... TEMPLATE), its Redis keys (DUMP with their TTLs) and
    its objects (server-side copies), in seconds: for trying something
    destructive and going back. It is local and disposable, next to the
    data; use `inv backup` for anything you need to keep. Saving and
    restoring end the sessions open on the databases concerned (services
    reconnect). A restore checks every part first, replaces each database
    and each service's keys atomically, and re-applies the grants.
    `inv snapshots` lists them.
    """
    from infra_lib.manifest import load_manifest
    from infra_lib.snapshots import LATEST

    actions = ("save", "restore", "rm")
    with _errors():
        if action not in actions:
            raise Exit(
                f"unknown action {action!r}; use one of: {', '.join(actions)} "
                "(`inv snapshots` lists them)",
                2,
            )
        stack = _stack(env_file, allow_foreign=allow_foreign_project)
        plan = load_manifest(Path(manifest).resolve() if manifest else MANIFEST)
        snapshots = _stack_snapshots(stack, plan)
        if action == "rm":
            removed = snapshots.remove(name)
            print(f"removed snapshot {name!r} ({len(removed)} part(s))")
            return
        if action == "save":
            chosen = [plan.service(x) for x in service] if service else list(plan)
            started = time.perf_counter()
            made = snapshots.save(name, _service_stores(stack, chosen))
            _snapshot_table(made)
            print(
                f"saved snapshot {name!r} ({len(made)} part(s)) in "
                f"{time.perf_counter() - started:.1f} s (local and disposable: not a backup)"
            )
            return
        chosen_name = snapshots.latest() if name == LATEST else name
        held = sorted({p.service for p in snapshots.find(chosen_name)})
        names = service or held
        dbs = {
            s.service: s.redis_db for s in _service_stores(stack, [plan.service(x) for x in names])
        }
        started = time.perf_counter()
        restored = snapshots.restore(chosen_name, service or None, dbs)
        elapsed = time.perf_counter() - started
        with_db = [x for x in restored if plan.service(x).postgres is not None]
        if with_db:
            report = _provision(
                stack, with_db, dry_run=False, manifest=manifest, redis=False, storage=False
            )
            if report.changed:
                _report_table(report)
        print(
            f"restored {', '.join(restored)} from snapshot {chosen_name!r} in {elapsed:.1f} s; "
            "grants re-applied. The snapshot is kept."
        )


def _stack_snapshots(stack: Stack, plan: Manifest) -> Any:
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.redis.config import RedisConfig
    from infra_lib.snapshots import StackSnapshots
    from infra_lib.storage.config import S3Config

    settings = stack.settings
    return StackSnapshots(
        _env_dir(stack.project_name) / "snapshots",
        postgres=PostgresConfig.from_stack(settings),
        redis=RedisConfig.from_stack(settings),
        storage=S3Config.from_stack(settings),
        bucket=plan.project.bucket_name,
    )


def _service_stores(stack: Stack, services: Sequence[Any]) -> list[Any]:
    """Where each service's data is; its Redis DB comes from its env file."""
    from infra_lib.postgres.snapshots import SnapshotTarget
    from infra_lib.provisioning import read_service_env
    from infra_lib.snapshots import ServiceStores

    env_dir = _env_dir(stack.project_name)
    found = []
    for s in services:
        db = None
        if s.redis is not None:
            # Read first: a service never provisioned fails here, before any change.
            value = read_service_env(env_dir, s.name).values.get("REDIS_DB")
            db = int(value) if value is not None and value.isdigit() else None
        found.append(
            ServiceStores(
                s.name,
                postgres=SnapshotTarget(s.name, s.postgres.database, s.postgres.role)
                if s.postgres is not None
                else None,
                redis_db=db,
                redis_prefix=s.redis.prefix_for(s.name) if s.redis is not None else None,
                storage_prefixes=tuple(s.storage.prefixes) if s.storage is not None else (),
            )
        )
    return found


@task(
    help={
        "name": "Only the parts of this snapshot.",
        "manifest": "Manifest file (default: infra.toml).",
        "env-file": "Use this env file instead of .env.",
    }
)
def snapshots(
    c: Context, name: str | None = None, manifest: str | None = None, env_file: str | None = None
) -> None:
    """List the local snapshots (`inv snapshot save NAME` makes one), newest first."""
    from infra_lib.manifest import load_manifest

    with _errors():
        stack = _stack(env_file, guard=False)
        plan = load_manifest(Path(manifest).resolve() if manifest else MANIFEST)
        _snapshot_table(_stack_snapshots(stack, plan).find(name))


def _seeded_services(plan: Manifest, names: Sequence[str] | None) -> list[Any]:
    chosen = [plan.service(x) for x in names] if names else list(plan)
    return [s for s in chosen if s.seed is not None]


def _seed(stack: Stack, plan: Manifest, services: Sequence[Any]) -> None:
    from infra_lib.provisioning import env_path
    from infra_lib.seed import seed_service
    from infra_lib.service import ServiceSettings

    base = plan.path.parent if plan.path else ROOT
    for service in services:
        path = env_path(_env_dir(stack.project_name), service.name)
        settings = ServiceSettings.load(path, environ={})
        print(f"seeding {service.name} ...", flush=True)
        report = seed_service(settings, service.seed, base)
        print(f"  {report.describe()} in {report.seconds:.2f} s")


@task(
    help={
        "service": "Only this service (repeatable); default: every service with a `seed` "
        "in the manifest.",
        "manifest": "Manifest file (default: infra.toml).",
        "env-file": "Use this env file instead of .env.",
    },
    iterable=["service"],
)
def seed(
    c: Context,
    service: list[str] | None = None,
    manifest: str | None = None,
    env_file: str | None = None,
) -> None:
    """Load the services' seed data (`seed = {...}` in infra.toml) with their own credentials.

    SQL files run in name order as the service's role, all in one
    transaction; the Redis JSON file is written in one MULTI/EXEC; the
    storage folder's files become objects under the service's prefixes.
    Each store is loaded all or nothing, and a bad file is named with its
    line. Run it on fresh data (`inv reset` empties a service and seeds it).
    """
    from infra_lib.manifest import load_manifest

    with _errors():
        stack = _stack(env_file)
        plan = load_manifest(Path(manifest).resolve() if manifest else MANIFEST)
        chosen = _seeded_services(plan, service)
        if not chosen:
            raise Exit(
                "no service to seed: give one a `seed = { postgres = [...], redis = ..., "
                "storage = ... }` in the manifest",
                2,
            )
        _seed(stack, plan, chosen)


def _confirm_reset(found: Sequence[Any]) -> None:
    lines = "\n  ".join(d.describe() for d in found)
    if not sys.stdin.isatty():
        raise Exit(
            f"refusing to reset without --yes; this data would be lost:\n  {lines}\n"
            "Nothing was changed.",
            2,
        )
    print(f"this data will be lost:\n  {lines}")
    if input("type 'reset' to go on: ").strip() != "reset":
        raise Exit("not confirmed; nothing was changed", 1)


@task(
    help={
        "service": "Only this service (repeatable); default: every service of the manifest.",
        "no-seed": "Only empty the services; do not load their seed data afterwards.",
        "yes": "Do not ask, even when the services hold data.",
        "manifest": "Manifest file (default: infra.toml).",
        "env-file": "Use this env file instead of .env.",
    },
    iterable=["service"],
)
def reset(
    c: Context,
    service: list[str] | None = None,
    no_seed: bool = False,
    yes: bool = False,
    manifest: str | None = None,
    env_file: str | None = None,
) -> None:
    """Empty services' data and seed them again; their credentials and env files stay.

    Drops and re-creates each service's database (same owner and grants),
    removes the keys under its Redis key prefix and the objects under its
    storage prefixes, then loads its seed (unless --no-seed). Other services
    are not touched. When there is data to lose, asks first (or --yes).
    """
    from infra_lib.manifest import load_manifest
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.redis.config import RedisConfig
    from infra_lib.reset import AdminStores, empty_service, find_data
    from infra_lib.storage.config import S3Config

    with _errors():
        stack = _stack(env_file)
        plan = load_manifest(Path(manifest).resolve() if manifest else MANIFEST)
        chosen = [plan.service(x) for x in service] if service else list(plan)
        settings = stack.settings

        def uses(part: str) -> bool:
            return any(getattr(s, part) is not None for s in chosen)

        admins = AdminStores(
            PostgresConfig.from_stack(settings) if uses("postgres") else None,
            RedisConfig.from_stack(settings) if uses("redis") else None,
            S3Config.from_stack(settings) if uses("storage") else None,
            plan.project.bucket_name,
        )
        redis_dbs = {x.service: x.redis_db for x in _service_stores(stack, chosen)}
        found = [find_data(s, admins, redis_dbs.get(s.name)) for s in chosen]
        if any(d.present for d in found) and not yes:
            _confirm_reset([d for d in found if d.present])
        started = time.perf_counter()
        for s in chosen:
            removed = empty_service(s, admins, redis_dbs.get(s.name))
            print(f"emptied {removed.describe().replace(': empty', ': (was empty)')}")
        with_db = [s.name for s in chosen if s.postgres is not None]
        if with_db:
            _provision(stack, with_db, dry_run=False, manifest=manifest, redis=False, storage=False)
            print(f"re-created the database of {', '.join(with_db)} (grants re-applied)")
        if not no_seed:
            _seed(stack, plan, _seeded_services(plan, [s.name for s in chosen]))
        print(f"reset {', '.join(s.name for s in chosen)} in {time.perf_counter() - started:.1f} s")


def _snapshot_table(found: Sequence[Any]) -> None:
    from rich.table import Table

    if not found:
        print("no snapshots; `inv snapshot save NAME` makes one")
        return
    table = Table(title="snapshots (local, disposable)")
    for column in ("name", "service", "store", "created", "size", "holds"):
        table.add_column(column)
    for part in found:
        table.add_row(
            part.name,
            part.service,
            part.store,
            part.created.isoformat(),
            f"{part.size_bytes / 2**20:.1f} MiB",
            part.detail,
        )
    _console().print(table)


@task(
    help={
        "service": "The service whose settings to print.",
        "show-secrets": "Print passwords and URLs with credentials in clear.",
        "manifest": "Manifest file (default: infra.toml).",
        "env-file": "Use this env file instead of .env.",
    }
)
def env(
    c: Context,
    service: str,
    show_secrets: bool = False,
    manifest: str | None = None,
    env_file: str | None = None,
) -> None:
    """Print a service's settings (KEY=value); secrets are masked unless asked."""
    from infra_lib.manifest import load_manifest
    from infra_lib.names import validate_service_name
    from infra_lib.provisioning import env_path, read_service_env

    with _errors():
        env_dir = _env_dir(_stack(env_file, guard=False).project_name)
        name = validate_service_name(service)
        if not env_path(env_dir, name).is_file():
            # Not provisioned, or not a service at all: the manifest tells which.
            load_manifest(Path(manifest).resolve() if manifest else MANIFEST).service(name)
        settings = read_service_env(env_dir, name)
        values = settings.values if show_secrets else settings.masked()
        for key, value in values.items():
            print(f"{key}={value}")


@task(
    help={
        "dry-run": "Only list the dead sessions' resources; remove nothing.",
        "env-file": "Use this env file instead of .env.",
    }
)
def test_cleanup(c: Context, dry_run: bool = False, env_file: str | None = None) -> None:
    """Remove what killed test sessions left on the stack; live sessions are left alone."""
    from rich.table import Table

    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.redis.config import RedisConfig
    from infra_lib.sessions import Admins, reclaim
    from infra_lib.storage.config import S3Config

    with _errors():
        settings = _stack(env_file).settings
        admins = Admins(
            RedisConfig.from_stack(settings),
            PostgresConfig.from_stack(settings),
            S3Config.from_stack(settings),
        )
        report = reclaim(admins, unleased=True, dry_run=dry_run)
    table = Table(title="test sessions" + (" (dry run)" if dry_run else ""))
    for column in ("session", "holder", "state", "removed"):
        table.add_column(column)
    for session in report.reclaimed:
        state = "dead: would remove" if dry_run else "dead: removed"
        table.add_row(session.tag, session.holder, state, ", ".join(session.removed))
    for tag in report.live:
        table.add_row(tag, "", "live: kept", "")
    _console().print(table)
    verb = "would reclaim" if dry_run else "reclaimed"
    print(f"{verb} {len(report.reclaimed)} dead session(s), kept {len(report.live)} live one(s)")
    if report.errors:
        raise Exit("could not reclaim everything:\n  " + "\n  ".join(report.errors), code=1)


@task(
    iterable=["skip", "service"],
    help={
        "env": "Environment name: reads .env.<NAME> instead of .env (e.g. --env staging).",
        "env-file": "Read this env file instead (overrides --env).",
        "skip": "Leave out a component that is not deployed (repeatable); adds to "
        "INFRA_SMOKE_SKIP from the env file. `observability` leaves out the metrics "
        "checks that run when that layer is on.",
        "service": "Check only this service (repeatable).",
        "junit": "Write JUnit XML here (default: reports/junit-smoke.xml).",
        "manifest": "Manifest file (default: infra.toml).",
    },
)
def smoke(
    c: Context,
    env: str | None = None,
    env_file: str | None = None,
    skip: list[str] | None = None,
    service: list[str] | None = None,
    junit: str = "reports/junit-smoke.xml",
    manifest: str | None = None,
) -> None:
    """Check every service end to end with its own credentials; exit 1 naming failures."""
    from infra_lib.manifest import load_manifest
    from infra_lib.observability.layer import PROFILE, is_enabled
    from infra_lib.smoke.checks import SmokeTarget, build_checks
    from infra_lib.smoke.runner import COMPONENTS, run_checks

    with _errors():
        if env_file is None and env is not None:
            env_file = str(ROOT / f".env.{env}")
        stack = _stack(env_file, guard=False)
        skipped = {x.strip() for x in stack.settings.infra_smoke_skip.split(",") if x.strip()}
        skipped |= set(skip or ())
        unknown = skipped - {*COMPONENTS, PROFILE}
        if unknown:
            raise Exit(
                f"unknown component(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(COMPONENTS)}",
                code=2,
            )
        target = SmokeTarget(
            stack.settings,
            load_manifest(Path(manifest).resolve() if manifest else MANIFEST),
            _env_dir(stack.project_name),
        )
        components = [x for x in COMPONENTS if x not in skipped]
        if is_enabled(stack.settings) and PROFILE not in skipped:
            components.append("observability")
        report = run_checks(
            build_checks(target, components=components, services=service or None),
            skipped=sorted(skipped),
        )
        report.write_junit(ROOT / junit)
        _smoke_table(report)
        if not report.ok:
            lines = [f"  {r.name} [{r.service}]: {r.cause}" for r in report.failures]
            raise Exit("smoke checks failed:\n" + "\n".join(lines), code=1)


def _smoke_table(report: SmokeReport) -> None:
    from rich.table import Table

    table = Table(title=f"smoke ({report.seconds:.2f} s)")
    for column in ("check", "service", "result", "time", "detail"):
        table.add_column(column)
    for r in report.results:
        result = "[green]ok[/]" if r.ok else "[red]FAILED[/]"
        table.add_row(r.name, r.service, result, f"{r.seconds * 1000:.0f} ms", r.detail or r.cause)
    _console().print(table)
    if report.skipped_components:
        print(f"skipped (not deployed): {', '.join(report.skipped_components)}")
    passed = sum(r.ok for r in report.results)
    print(f"smoke took {report.seconds:.2f}s")
    print(f"smoke: {passed} passed, {len(report.failures)} failed")


@task(
    help={
        "fault": "pause, stop, kill, restart, restart-loop (its container); latency, "
        "bandwidth, timeout, reset, cut (the network to it); cpu-limit, memory-limit, "
        "cpu-burn, memory-pressure (its resources); disk-full (its data volume); "
        "gateway-502 (its routes through the gateway). See below.",
        "service": "The service that gets the fault, e.g. redis (gateway-502: a service "
        "with routes in the manifest, or minio or livekit).",
        "duration": "Seconds the fault stays on before it is rolled back (default 5).",
        "latency-ms": "latency: delay added to every answer (default 500).",
        "jitter-ms": "latency: random spread around it (default 0).",
        "rate-kbps": "bandwidth: KB/s the service may send (default 16).",
        "after-ms": "timeout/reset: ms before the connection is closed/reset "
        "(default 0: timeout never closes, reset at once).",
        "cpus": "cpu-limit: CPUs the container may use (default 0.2).",
        "memory-mb": "memory-limit: the cap; memory-pressure: MB held inside (default 256).",
        "workers": "cpu-burn: busy loops inside the container (default 1).",
        "every": "restart-loop: seconds between kills (default 5).",
        "size-mb": "disk-full: the most the filler may write; a volume with more free "
        "space is refused, so the host's disk is never filled (default 256).",
        "manifest": "gateway-502: the manifest whose routes the gateway serves "
        "(default: infra.toml).",
        "yes-production": "Run even though the stack does not look local (a remote "
        "DOCKER_HOST, servers outside the stack).",
        "recover": "Only undo a fault an earlier run left behind, then exit.",
        "window": "With the observability layer on, read its metrics and log lines of "
        "the experiment's window into the report (waits for one scrape, at most 15 s); "
        "--no-window skips it.",
        "json": "Print the report as JSON (for CI) instead of a timeline.",
        "env-file": "Use this env file instead of .env.",
    }
)
def chaos(
    c: Context,
    fault: str | None = None,
    service: str | None = None,
    duration: float = 5.0,
    latency_ms: int = 500,
    jitter_ms: int = 0,
    rate_kbps: int = 16,
    after_ms: int = 0,
    cpus: float = 0.2,
    memory_mb: int = 256,
    workers: int = 1,
    every: float = 5.0,
    size_mb: int = 256,
    manifest: str | None = None,
    yes_production: bool = False,
    recover: bool = False,
    window: bool = True,
    json: bool = False,
    env_file: str | None = None,
) -> None:
    """Failure experiment: apply a fault to one service, watch it, roll it back.

    Container faults: pause freezes the container (clients hang), stop stops
    it (clients are refused), kill crashes its server process (the restart
    policy brings it back), restart restarts it cleanly, restart-loop crashes
    it every --every seconds. Resource faults lower its CPU or memory limit in
    place (docker update) or run a CPU burn or a memory holder inside it.
    disk-full fills the data volume of postgres, redis or minio with one file
    of at most --size-mb, deleted on rollback (the volume needs a filesystem
    of its own: see the docs). gateway-502 points the gateway's routes to the
    service at an address where nothing listens (`inv up --with gateway`):
    clients get the gateway's 502 naming the service, the rest is untouched.
    Network faults act on the proxy in front of
    postgres, redis or minio (`inv up --with chaos`), so only clients routed
    through it see them: latency, bandwidth, timeout (data stops), reset
    (TCP RST), cut (proxy off). The service is probed over its own protocol
    (through the proxy for a network fault) throughout; the
    timeline shows when the fault went on, the first failed probe, the
    rollback and the recovery. The rollback runs on normal end, on error and
    on Ctrl-C; a fault left by a run that was killed is undone by the next
    `inv chaos` (or `inv chaos --recover`). With the observability layer on,
    the report ends with the service's key series and log lines of the
    window. Only this project's containers
    are touched and no data is deleted. See docs/failure-experiments.md.
    """
    import json as json_module

    from infra_lib.chaos import (
        FAULTS,
        FaultLedger,
        NetworkParams,
        ResourceParams,
        require_local,
        run_experiment,
    )
    from infra_lib.chaos import recover as undo_leftover
    from infra_lib.observability.layer import is_enabled as observability_on

    with _errors():
        stack = _stack(env_file)
        ledger = FaultLedger(_env_dir(stack.project_name) / "chaos" / "active.json")
        if recover:
            message = undo_leftover(stack, ledger)
            print(message or "no fault is outstanding")
            return
        if fault is None or service is None:
            raise Exit(
                "give --fault and --service, e.g. `inv chaos --fault pause --service redis`; "
                f"faults: {', '.join(FAULTS)}",
                2,
            )
        # An undo (--recover) is always allowed; a new fault only on a local stack.
        require_local(stack.settings, os.environ, yes_production=yes_production)

        def show(event: Any) -> None:
            if not json:
                print(f"{event.at:7.2f} s  {event.kind:<14} {event.detail}", flush=True)

        if not json:
            print(f"{fault} {service} for {duration:g} s: {FAULTS.get(fault, '?')}")
        try:
            report = run_experiment(
                stack,
                ledger,
                fault,
                service,
                duration=duration,
                network=NetworkParams(latency_ms, jitter_ms, rate_kbps, after_ms),
                resources=ResourceParams(cpus, memory_mb, workers),
                every=every,
                size_mb=size_mb,
                manifest=_chaos_manifest(fault, manifest),
                on_event=show,
            )
        except KeyboardInterrupt:
            raise Exit("interrupted: the fault was rolled back", code=130) from None
        if window and observability_on(stack.settings):
            from infra_lib.chaos.window import observe_window

            if not json:
                print("reading the metrics and logs of the window ...", flush=True)
            report.window = observe_window(
                stack.settings, stack.project_name, fault, service, fault_at=report.started_at
            )
            if not json:
                for line in report.window.lines():
                    print(f"  {line}")
        if json:
            print(json_module.dumps(report.to_json(), indent=2))
        elif report.leftover:
            print(report.leftover)
        if not report.recovered:
            raise Exit(f"{service} did not recover after the rollback; see `inv logs {service}`", 1)


def _chaos_manifest(fault: str, manifest: str | None) -> Any:
    """The manifest a gateway fault needs; other faults do not read one."""
    from infra_lib.chaos import GATEWAY_FAULTS
    from infra_lib.manifest import load_manifest

    if fault not in GATEWAY_FAULTS:
        return None
    return load_manifest(Path(manifest).resolve() if manifest else MANIFEST)


@task(
    help={
        "errors": "Also print each target's last scrape error.",
        "env-file": "Use this env file instead of .env.",
    }
)
def metrics(c: Context, errors: bool = False, env_file: str | None = None) -> None:
    """Print each scrape target (up/down, last scrape, key gauges) and firing alerts.

    Exits 1 when a target of the stack itself is down; the team's services
    from infra.toml are listed but may simply not be running.
    """
    from rich.table import Table

    from infra_lib.observability.layer import require_enabled
    from infra_lib.observability.report import check_targets, metrics_rows
    from infra_lib.observability.store import MetricsStore

    with _errors():
        stack = _stack(env_file)
        require_enabled(stack.settings)
        store = MetricsStore.from_stack(stack.settings)
        rows = metrics_rows(store)
        table = Table(title=f"metrics of {stack.project_name!r} ({store.base_url}/vmui)")
        for column in ("job", "instance", "state", "last scrape", "key gauges"):
            table.add_column(column)
        for row in rows:
            state = "[green]up[/]" if row.up else "[red]down[/]"
            detail = row.gauges or (row.error if errors else "")
            job = row.job if row.layer == "stack" else f"{row.job} (service)"
            table.add_row(job, row.instance, state, row.last_scrape, detail)
        _console().print(table)
        check = check_targets(store)
        print(check.summary())
        if not check.ok:
            raise Exit(f"stack targets down: {check.failure()}", code=1)


@task(
    positional=["action"],
    help={
        "action": "reload (default): regenerate the config from infra.toml and .env, check it "
        "with nginx -t, apply it and reload nginx gracefully; check: only check it.",
        "manifest": "Manifest file (default: infra.toml).",
        "env-file": "Use this env file instead of .env.",
    },
)
def gateway(
    c: Context,
    action: str | None = None,
    manifest: str | None = None,
    env_file: str | None = None,
) -> None:
    """Regenerate, check and reload the gateway's config (`inv gateway reload`)."""
    from infra_lib.gateway.layer import require_enabled

    # A positional with a default is never filled by Invoke: None means reload.
    action = action or "reload"
    with _errors():
        if action not in ("reload", "check"):
            raise Exit(f"unknown action {action!r}: use `reload` or `check`", code=2)
        stack = _stack(env_file)
        require_enabled(stack.settings)
        _report_table(_gateway_apply(stack, manifest, dry_run=action == "check"))


@task(
    help={
        "manifest": "Manifest file (default: infra.toml).",
        "env-file": "Use this env file instead of .env.",
    }
)
def routes(c: Context, manifest: str | None = None, env_file: str | None = None) -> None:
    """Print the gateway's routes: public path, upstream, and whether its health path answers."""
    from rich.table import Table

    from infra_lib.gateway.layer import require_enabled
    from infra_lib.gateway.report import route_rows
    from infra_lib.manifest import load_manifest

    with _errors():
        stack = _stack(env_file, guard=False)
        require_enabled(stack.settings)
        rows = route_rows(stack, load_manifest(Path(manifest).resolve() if manifest else MANIFEST))
        table = Table(title=f"gateway routes of {stack.project_name!r}")
        for column in ("route", "kind", "service", "upstream", "health"):
            table.add_column(column)
        for row in rows:
            style = "green" if row.ok else "red"
            table.add_row(
                row.path, row.kind, row.service, row.upstream, f"[{style}]{row.health}[/]"
            )
        _console().print(table)
        up = sum(row.ok for row in rows)
        print(f"{up} of {len(rows)} upstreams answer their health path")


@task(
    help={
        "install": "Add the CA to Debian's system store (/usr/local/share/ca-certificates + "
        "update-ca-certificates); needs root.",
        "env-file": "Use this env file instead of .env.",
    }
)
def trust(c: Context, install: bool = False, env_file: str | None = None) -> None:
    """Print where the local CA is and how to trust it; --install does it on Debian."""
    from infra_lib.gateway.layer import GatewayPaths
    from infra_lib.gateway.trust import install_ca, trust_instructions

    with _errors():
        stack = _stack(env_file, guard=False)
        paths = GatewayPaths(_env_dir(stack.project_name))
        if install:
            target = install_ca(paths, stack.project_name)
            print(f"installed {paths.ca_cert} as {target} and ran update-ca-certificates")
            return
        if not paths.ca_cert.is_file():
            raise Exit(f"{paths.ca_cert} does not exist; `inv init` makes the local CA", code=2)
        for line in trust_instructions(paths, stack.project_name):
            print(line)


def _livekit(env_file: str | None) -> LiveKitConfig:
    from infra_lib.livekit.config import LiveKitConfig

    return LiveKitConfig.from_stack(_stack(env_file, guard=False).settings)


@task(
    help={
        "room": "Room to join (created on join if missing).",
        "identity": "Participant identity (unique in the room).",
        "name": "Display name.",
        "ttl": "Lifetime in seconds (default 3600, at most 86400).",
        "can-publish": "May publish tracks (default); --no-can-publish for a viewer.",
        "can-subscribe": "May subscribe to others' tracks (default).",
        "can-publish-data": "May send data messages (default).",
        "hidden": "Invisible to other participants.",
        "room-admin": "May moderate the room.",
        "env-file": "Use this env file instead of .env.",
    }
)
def token(
    c: Context,
    room: str,
    identity: str,
    name: str | None = None,
    ttl: int = 3600,
    can_publish: bool = True,
    can_subscribe: bool = True,
    can_publish_data: bool = True,
    hidden: bool = False,
    room_admin: bool = False,
    env_file: str | None = None,
) -> None:
    """Mint a LiveKit join token and print it with the URL clients connect to."""
    from datetime import timedelta

    from infra_lib.livekit.tokens import TokenFactory

    with _errors():
        minted = TokenFactory(_livekit(env_file)).join_token(
            room,
            identity,
            name=name,
            ttl=timedelta(seconds=ttl),
            can_publish=can_publish,
            can_subscribe=can_subscribe,
            can_publish_data=can_publish_data,
            hidden=hidden,
            room_admin=room_admin,
        )
        print(f"url:     {minted.url}")
        print(f"room:    {minted.room}")
        print(f"expires: {minted.expires_at}")
        print(f"token:   {minted.token}")


@task(help={"env-file": "Use this env file instead of .env."})
def rooms(c: Context, env_file: str | None = None) -> None:
    """List the LiveKit server's active rooms."""
    from rich.table import Table

    from infra_lib.livekit.rooms import RoomService

    with _errors(), RoomService(_livekit(env_file)) as service:
        listed = service.list_rooms()
        table = Table(title=f"{len(listed)} room(s)")
        for column in ("room", "participants", "max", "empty timeout", "created"):
            table.add_column(column)
        for room in listed:
            table.add_row(
                room.name,
                str(room.num_participants),
                str(room.max_participants or "-"),
                str(room.empty_timeout or "-"),
                str(room.creation_time),
            )
        _console().print(table)


# -- backup and restore ------------------------------------------------------


def _backup_dir(stack: Stack, path: str | None) -> Path:
    from infra_lib.backup.jobs import default_dest

    return Path(path).resolve() if path else default_dest(ROOT, stack.project_name)


def _backup_manifest(service: str | None, manifest: str | None) -> Manifest | None:
    from infra_lib.manifest import load_manifest

    if service is None and manifest is None:
        return None
    return load_manifest(Path(manifest).resolve() if manifest else MANIFEST)


def _shown(path: Path) -> str:
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


@contextmanager
def _progress(quiet: bool) -> Iterator[ProgressCallback | None]:
    """Rich progress bars (bytes, rate, ETA) on a terminal; nothing when quiet or piped."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as bars:
        ids: dict[str, TaskID] = {}

        def update(done: int, total: int | None, label: str) -> None:
            if label not in ids:
                ids[label] = bars.add_task(label, total=total)
            bars.update(ids[label], completed=done, total=total)

        yield update


def _drill_rows(reports: Sequence[DrillReport]) -> None:
    from rich.table import Table

    table = Table(title="restore drill")
    for column in ("archive", "result", "seconds", "detail"):
        table.add_column(column)
    for report in reports:
        result = "[green]passed[/]" if report.ok else "[red]FAILED[/]"
        table.add_row(report.archive.name, result, f"{report.seconds:.1f}", report.message)
    _console().print(table)


@task(
    help={
        "target": "postgres, redis, minio or all (default).",
        "service": "Only this service's database, Redis DB or storage prefixes (see infra.toml).",
        "to": "Directory for the archives (default: backups/<project>), or s3://BUCKET/PREFIX "
        "to also upload each archive there (the local copy in backups/<project> is kept; the "
        "bucket is created, private, if absent; BACKUP_S3_* variables select a managed S3).",
        "encrypt": "Encrypt the uploaded copies (AES-256-GCM, key from scrypt) with the "
        "passphrase in BACKUP_PASSPHRASE (at least 12 characters; never an argument). "
        "Needs --to s3://...; the local copies stay as they are. Lose it and you lose them.",
        "keep": "Afterwards keep only the N newest archives of each target and scope (0: all); "
        "with --to s3://... both locally and in the bucket.",
        "verify": "Restore each new archive into a scratch copy, compare counts, remove it.",
        "verify-only": "Run that restore drill on the newest existing archives; back up nothing.",
        "quiet": "No progress bars or tables: one line per archive.",
        "manifest": "Manifest file (default: infra.toml).",
        "env-file": "Use this env file instead of .env.",
        "verbose": "Show debug logs (every command run, without secrets).",
    }
)
def backup(
    c: Context,
    target: str = "all",
    service: str | None = None,
    to: str | None = None,
    keep: int = 0,
    verify: bool = False,
    verify_only: bool = False,
    encrypt: bool = False,
    quiet: bool = False,
    manifest: str | None = None,
    env_file: str | None = None,
    verbose: bool = False,
) -> None:
    """Back up PostgreSQL, Redis and MinIO into checked archives under backups/<project>/."""
    from infra_lib.backup import crypto, jobs, remote

    _setup_logging(verbose)
    with _errors():
        passphrase = None
        if encrypt:
            if not remote.is_s3_url(to):
                raise Exit("--encrypt encrypts uploads; add --to s3://BUCKET/PREFIX", code=2)
            passphrase = crypto.passphrase_from(os.environ)
            if passphrase is None:
                raise Exit(
                    f"--encrypt reads the passphrase from {crypto.ENV_PASSPHRASE} only; set it "
                    f"(at least {crypto.MIN_PASSPHRASE} characters) in the environment",
                    code=2,
                )
        stack = _stack(env_file)
        store = None
        if remote.is_s3_url(to):
            store = remote.RemoteStore(
                remote.remote_config(stack.settings, os.environ), remote.parse_s3_url(to)
            )
            if verify_only:
                raise Exit("--verify-only drills local archives; drop --to s3://...", code=2)
        dest = _backup_dir(stack, None if store is not None else to)
        targets = jobs.parse_targets(target)
        incomplete: jobs.BackupIncomplete | None = None
        if verify_only:
            with _progress(quiet) as on_progress:
                reports = jobs.drill_latest(stack, targets, dest=dest, on_progress=on_progress)
        else:
            with _progress(quiet) as on_progress:
                try:
                    outcomes = jobs.backup(
                        stack,
                        targets,
                        dest=dest,
                        manifest=_backup_manifest(service, manifest),
                        service=service,
                        keep=keep or None,
                        verify=verify,
                        remote=store,
                        passphrase=passphrase,
                        on_progress=on_progress,
                    )
                except jobs.BackupIncomplete as exc:
                    # The other targets' archives are listed before the failures.
                    incomplete = exc
                    outcomes = list(exc.outcomes)
            reports = [o.drill for o in outcomes if o.drill is not None]
            if quiet:
                for outcome in outcomes:
                    print(outcome.archive.path)
                    if outcome.uploaded:
                        print(outcome.uploaded)
            else:
                from rich.table import Table

                table = Table(title=f"backups of {stack.project_name!r} in {_shown(dest)}")
                columns = ["archive", "scope", "datasets", "size", "seconds", "pruned"]
                if store is not None:
                    columns += ["uploaded", "pruned in S3"]
                for column in columns:
                    table.add_column(column)
                for outcome in outcomes:
                    info = outcome.archive
                    row = [
                        info.name,
                        info.scope,
                        ", ".join(d.name for d in info.manifest.datasets) or "(nothing)",
                        _size(info.size),
                        f"{outcome.seconds:.1f}",
                        str(len(outcome.pruned)),
                    ]
                    if store is not None:
                        row += [outcome.uploaded or "no", str(len(outcome.pruned_remote))]
                    table.add_row(*row)
                for failed_target in incomplete.failures if incomplete is not None else ():
                    table.add_row(f"[red]{failed_target}: FAILED[/]", *[""] * (len(columns) - 1))
                _console().print(table)
        if reports and not quiet:
            _drill_rows(reports)
        if incomplete is not None:
            raise incomplete
        failed = [r for r in reports if not r.ok]
        if failed:
            raise Exit(
                "restore drill failed: " + "; ".join(f"{r.archive}: {r.message}" for r in failed),
                code=1,
            )


@task(
    name="backups",
    help={
        "dir": "Directory of the archives (default: backups/<project>), or s3://BUCKET/PREFIX.",
        "target": "Only this target's archives.",
        "env-file": "Use this env file instead of .env.",
    },
)
def list_backups(
    c: Context, dir_: str | None = None, target: str = "all", env_file: str | None = None
) -> None:
    """List the archives: time, target, scope, size, and whether a restore drill passed."""
    from rich.table import Table

    from infra_lib.backup import remote
    from infra_lib.backup.archive import list_archives
    from infra_lib.backup.jobs import parse_targets

    with _errors():
        # Listing changes nothing, so another checkout's project is no reason to refuse.
        stack = _stack(env_file, guard=False)
        targets = parse_targets(target)
        if remote.is_s3_url(dir_):
            store = remote.RemoteStore(
                remote.remote_config(stack.settings, os.environ), remote.parse_s3_url(dir_)
            )
            found = [a for a in remote.list_remote(store) if a.target in targets]
            table = Table(title=f"backups in {store.location}")
            for column in ("time (UTC)", "target", "scope", "size", "verified", "archive"):
                table.add_column(column)
            for item in reversed(found):
                table.add_row(
                    f"{item.created_at:%Y-%m-%d %H:%M:%S}",
                    item.target,
                    item.scope,
                    _size(item.size),
                    "-",
                    item.name,
                )
            _console().print(table)
            if not found:
                print(f"no complete archives in {store.location}")
            return
        dest = _backup_dir(stack, dir_)
        archives = [a for a in list_archives(dest) if a.target in targets]
        table = Table(title=f"backups in {_shown(dest)}")
        for column in ("time (UTC)", "target", "scope", "size", "verified", "archive"):
            table.add_column(column)
        for info in reversed(archives):
            if info.verified is None:
                verified = "-"
            elif info.verified.ok:
                verified = f"[green]yes[/] {info.verified.checked_at:%Y-%m-%d %H:%M}"
            else:
                verified = f"[red]FAILED[/] {info.verified.checked_at:%Y-%m-%d %H:%M}"
            table.add_row(
                f"{info.created_at:%Y-%m-%d %H:%M:%S}",
                info.target,
                info.scope,
                _size(info.size),
                verified,
                info.name,
            )
        _console().print(table)
        if not archives:
            print(f"no archives in {dest}; make one with `inv backup`")


@task(
    name="restore",
    help={
        "target": "postgres, redis, minio or all (default).",
        "service": "Only this service's database, Redis DB or storage prefixes (see infra.toml).",
        "from": "An archive directory, a directory of archives, s3://BUCKET/PREFIX/<archive> "
        "(downloaded into a private temporary directory, checked, restored, removed; an "
        "encrypted one is decrypted with the passphrase in BACKUP_PASSPHRASE), or "
        "`latest` (default).",
        "dir": "Where `latest` looks (default: backups/<project>), or s3://BUCKET/PREFIX.",
        "into": "Restore beside the original: a new database name, Redis DB number or bucket.",
        "force": "Replace existing data once every archive has been checked and the new copy "
        "is complete: a new database renamed into place, a scratch Redis DB swapped in, "
        "objects staged in a bucket then copied over (objects the archive lacks are deleted).",
        "quiet": "No progress bars or tables.",
        "manifest": "Manifest file (default: infra.toml).",
        "env-file": "Use this env file instead of .env.",
        "verbose": "Show debug logs (every command run, without secrets).",
    },
)
def restore_backup(
    c: Context,
    target: str = "all",
    service: str | None = None,
    from_: str = "latest",
    dir_: str | None = None,
    into: str | None = None,
    force: bool = False,
    quiet: bool = False,
    manifest: str | None = None,
    env_file: str | None = None,
    verbose: bool = False,
) -> None:
    """Restore from an archive, checked first; refuses to overwrite data without --force."""
    from infra_lib.backup import jobs, remote

    _setup_logging(verbose)
    with _errors():
        stack = _stack(env_file)
        url = from_ if remote.is_s3_url(from_) else dir_ if from_ == "latest" else None
        with _progress(quiet) as on_progress:
            source: jobs.ArchiveSource
            if remote.is_s3_url(url):
                from infra_lib.backup.crypto import passphrase_from

                location, name = remote.split_archive_url(url)
                store = remote.RemoteStore(
                    remote.remote_config(stack.settings, os.environ), location
                )
                source = jobs.RemoteArchives(
                    store,
                    _backup_dir(stack, None),
                    name,
                    passphrase_from(os.environ),
                    on_progress,
                )
            else:
                source = jobs.LocalArchives.at(
                    _backup_dir(stack, dir_),
                    "latest" if from_ == "latest" else Path(from_).resolve(),
                )
            reports = jobs.restore(
                stack,
                jobs.parse_targets(target),
                source=source,
                manifest=_backup_manifest(service, manifest),
                service=service,
                into=into,
                force=force,
                on_progress=on_progress,
            )
        if quiet:
            return
        from rich.table import Table

        for report in reports:
            table = Table(title=f"restored {report.target} from {report.archive.name}")
            for column in ("dataset", "into", "check", "backup", "restored"):
                table.add_column(column)
            for dataset in report.datasets:
                for check in dataset.checks:
                    style = "green" if check.ok else "red"
                    table.add_row(
                        dataset.dataset,
                        dataset.into,
                        check.item,
                        str(check.expected),
                        f"[{style}]{check.actual}[/]",
                    )
            _console().print(table)
            for dataset in report.datasets:
                for note in dataset.notes:
                    print(f"{dataset.into}: {note}")
