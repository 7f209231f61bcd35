"""What the last successful ``up`` left running, so that an unchanged stack skips Compose.

A no-op ``docker compose up --wait`` still loads and resolves the whole
project (0.4 s here) to find that nothing changed. :class:`Stack` records,
after each successful ``up``, a fingerprint of everything Compose reads
(the compose files, the env files, the variables they interpolate, the
profiles, the secret files) and the container and image of each service.
The next ``up`` asks the engine for its container list (0.02 s): when the
fingerprint is the same, every container is the recorded one, still running
healthy, and its image tag still names the image it runs, Compose would do
nothing, and is not run. Anything else, including a missing or unreadable
record, runs Compose as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["UpState", "fingerprint", "read_state", "write_state"]

# `${NAME}`, `${NAME:-default}`, `$NAME` in a compose file.
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")

# Variables the Compose CLI and the Docker client read besides interpolation.
_CLIENT_PREFIXES = ("COMPOSE_", "DOCKER_")


@dataclass(frozen=True, slots=True)
class UpState:
    """The fingerprint of one ``up`` and, per service, its container ID and image."""

    fingerprint: str
    containers: Mapping[str, tuple[str, str]] = field(default_factory=dict)


def _files(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            found.append(path)
    return found


def fingerprint(
    *,
    project: str,
    profiles: Sequence[str],
    compose_files: Sequence[Path],
    env_files: Sequence[Path],
    secrets_dir: Path,
    environ: Mapping[str, str] | None = None,
) -> str:
    """A digest of every input that can change what Compose would create.

    The compose files' whole directory is read (it holds the included files
    and the configs they mount), so is every secret file; an input left out
    here could only make ``up`` skip a change, so when in doubt it is in.
    """
    environ = os.environ if environ is None else environ
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    add("project", project.encode())
    add("profiles", ",".join(sorted(profiles)).encode())
    names: set[str] = set()
    directories = {p.parent for p in compose_files}
    for path in _files([*sorted(directories), *compose_files]):
        data = path.read_bytes()
        names.update(_VARIABLE.findall(data.decode(errors="replace")))
        add(f"compose:{path}", data)
    for path in env_files:
        add(f"env:{path}", path.read_bytes() if path.is_file() else b"<missing>")
    for path in _files([secrets_dir]):
        add(f"secret:{path}", path.read_bytes())
    for key in sorted(k for k in environ if k in names or k.startswith(_CLIENT_PREFIXES)):
        add(f"var:{key}", environ[key].encode())
    return digest.hexdigest()


def read_state(path: Path) -> UpState | None:
    """The recorded state, or ``None`` when there is none or it cannot be read."""
    try:
        raw = json.loads(path.read_text())
        containers = {
            str(name): (str(entry["id"]), str(entry["image"]))
            for name, entry in raw["containers"].items()
        }
        return UpState(str(raw["fingerprint"]), containers)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_state(path: Path, state: UpState) -> None:
    """Record ``state``, replacing the file in one rename so a reader never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "fingerprint": state.fingerprint,
        "containers": {
            name: {"id": cid, "image": image} for name, (cid, image) in state.containers.items()
        },
    }
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    partial.replace(path)
