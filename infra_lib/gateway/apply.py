"""Put a generated gateway config in place: checked first, then reloaded gracefully.

:func:`prepare` runs before Compose starts the gateway and on every
``provision``: it makes sure the certificates exist, renders the config from
the manifest and settings, and lets nginx itself (``nginx -t``, in the
gateway's own image) check the candidate. Only a candidate that passes
replaces the file the gateway reads; :func:`reload` then sends nginx its
graceful reload (new workers take new connections; old ones finish theirs).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infra_lib.changes import Change
from infra_lib.errors import GatewayConfigRejected, ServiceUnavailable
from infra_lib.gateway.layer import CONTAINER_ROOT, SERVICE, GatewayPaths, locked
from infra_lib.gateway.nginx import GatewayOptions, render_config
from infra_lib.gateway.routes import build_routes, stack_hosts
from infra_lib.gateway.tls import ensure_tls
from infra_lib.manifest import Manifest
from infra_lib.provisioning import ProvisionRow
from infra_lib.stack.envfile import write_private_file

if TYPE_CHECKING:
    from infra_lib.stack.compose import Stack

__all__ = ["Prepared", "apply_config", "check_config", "prepare", "reload", "render_for"]

logger = logging.getLogger(__name__)

_ROW_SERVICE = "(gateway)"
_CONFIG = f"{CONTAINER_ROOT}/nginx.conf"


@dataclass(frozen=True, slots=True)
class Prepared:
    """What :func:`prepare` wrote (or, for a dry run, would write)."""

    config_changed: bool
    #: The certificate was made again: nginx reads it only on (re)load.
    tls_changed: bool
    rows: tuple[ProvisionRow, ...]


def render_for(stack: Stack, manifest: Manifest) -> str:
    """The nginx config for ``manifest`` under the stack's settings."""
    return render_config(
        build_routes(manifest), stack_hosts(), GatewayOptions.from_settings(stack.settings)
    )


def _running(stack: Stack) -> bool:
    return any(s.name == SERVICE and s.state == "running" for s in stack.status([SERVICE]))


def check_config(stack: Stack, paths: GatewayPaths, text: str) -> None:
    """Have nginx check ``text`` (``nginx -t``) in the gateway's image.

    Raises :class:`GatewayConfigRejected` with nginx's message when it refuses.

    The candidate sits in a ``check-*`` folder of the mounted one, so the check sees
    the same certificate files, /etc/hosts and image as the gateway. A
    running gateway checks it itself; otherwise a throwaway container does.
    """
    from python_on_whales.exceptions import DockerException

    paths.make_dirs()
    # One folder per check (mkdtemp: 0700), so concurrent checks never meet.
    scratch = Path(tempfile.mkdtemp(prefix="check-", dir=paths.root))
    write_private_file(scratch / "nginx.conf", text)
    command = ["nginx", "-t", "-q", "-c", f"{CONTAINER_ROOT}/{scratch.name}/nginx.conf"]
    try:
        if _running(stack):
            stack.docker.compose.execute(SERVICE, command, tty=False)
        else:
            # With its dependencies (MinIO, LiveKit) started: nginx resolves them.
            stack.docker.compose.run(SERVICE, command, remove=True, tty=False)
    except DockerException as exc:
        output = (exc.stderr or exc.stdout or str(exc)).strip()
        lines = [line for line in output.splitlines() if line.strip()]
        raise GatewayConfigRejected(
            f"nginx rejects the generated gateway config ({' / '.join(lines[-3:])}). Nothing "
            "was applied and the running gateway keeps its config; check the `http` entries "
            "in infra.toml and the GATEWAY_* settings in .env."
        ) from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.debug("gateway config passed nginx -t in %s", stack.settings.gateway_image)


def apply_config(stack: Stack, paths: GatewayPaths, text: str) -> bool:
    """Check ``text`` with nginx, then make it the gateway's config; false if it already was."""
    with locked(paths.root / ".apply.lock"):
        current = paths.config_file
        if current.is_file() and current.read_text(encoding="utf-8") == text:
            # It passed nginx -t when it was written; checking again costs a container run.
            return False
        check_config(stack, paths, text)
        write_private_file(current, text)
        return True


def prepare(stack: Stack, manifest: Manifest, env_dir: Path, *, dry_run: bool = False) -> Prepared:
    """Certificates, then the checked config for ``manifest``; replaced only if it passes.

    With ``dry_run`` the config is checked but nothing is replaced (the
    certificates are still made: without them nothing can be checked).
    """
    paths = GatewayPaths(env_dir)
    tls = ensure_tls(stack.settings, paths)
    text = render_for(stack, manifest)
    if dry_run:
        current = paths.config_file
        changed = not current.is_file() or current.read_text(encoding="utf-8") != text
        if changed:
            check_config(stack, paths, text)
    else:
        changed = apply_config(stack, paths, text)
    config_change = (Change.PLANNED if dry_run else Change.CHANGED) if changed else Change.UNCHANGED
    tls_change = {"created": Change.CREATED, "renewed": Change.CHANGED}.get(
        tls.leaf, Change.UNCHANGED
    )
    routes = build_routes(manifest)
    rows = (
        ProvisionRow(
            _ROW_SERVICE,
            "certificate",
            str(paths.cert_file),
            tls_change,
            f"signed by {paths.ca_cert}" + (f" ({tls.reason})" if tls.leaf == "renewed" else ""),
        ),
        ProvisionRow(
            _ROW_SERVICE,
            "nginx config",
            str(paths.config_file),
            config_change,
            f"{len(routes)} routes; passed nginx -t",
        ),
    )
    return Prepared(changed, tls.leaf != "unchanged", rows)


def reload(stack: Stack) -> bool:
    """Graceful ``nginx -s reload`` in the running gateway; false if it is not running.

    nginx re-reads the config and certificate; connections open on the old
    workers (WebSockets too) keep going until they close.
    """
    from python_on_whales.exceptions import DockerException

    if not _running(stack):
        return False
    try:
        stack.docker.compose.execute(SERVICE, ["nginx", "-c", _CONFIG, "-s", "reload"], tty=False)
    except DockerException as exc:
        raise ServiceUnavailable(
            f"the gateway refused to reload: {(exc.stderr or str(exc)).strip()[-300:]}; "
            "see `inv logs gateway`",
            service=SERVICE,
        ) from exc
    return True
