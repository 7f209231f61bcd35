"""Write ``.env`` from ``.env.example``, and the stack's secrets to their files.

``.env.example`` documents every variable and holds no secret, so a copy of
it never starts a stack with a known password (Compose refuses a missing
secret file). :func:`write_env_file` renders it and generates each secret
into ``env/<project>/secrets/`` (see :mod:`infra_lib.stack.secrets`).
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from infra_lib.errors import ConfigError, EnvFileExists
from infra_lib.turn import turn_credentials

__all__ = [
    "GENERATED_KEYS",
    "SECRET_KEYS",
    "InitResult",
    "make_private_dirs",
    "mask",
    "parse_env_lines",
    "set_env_value",
    "tighten_env_files",
    "tighten_private",
    "write_env_file",
    "write_private_file",
]

#: LiveKit hands its TURN credential to every client, so it gets a bounded
#: life; `inv init --force` (or editing TURN_SECRET) renews it.
LIVEKIT_TURN_TTL_SECONDS = 365 * 24 * 3600


def _token() -> str:
    # 32 random bytes, URL-safe: no quoting needed in .env or in URLs.
    return secrets.token_urlsafe(32)


#: Variables whose value is a secret: masked in output, generated when empty.
SECRET_KEYS: frozenset[str] = frozenset(
    {
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "LIVEKIT_API_SECRET",
        "TURN_SECRET",
        "LIVEKIT_TURN_CREDENTIAL",
    }
)

# Renewed from TURN_SECRET on every write; no volume holds them.
_DERIVED = frozenset({"LIVEKIT_TURN_USERNAME", "LIVEKIT_TURN_CREDENTIAL"})

_INDEPENDENT: dict[str, Callable[[], str]] = {
    "POSTGRES_PASSWORD": _token,
    "REDIS_PASSWORD": _token,
    "MINIO_ROOT_PASSWORD": _token,
    "LIVEKIT_API_SECRET": _token,
    "TURN_SECRET": _token,
    "LIVEKIT_API_KEY": lambda: "API" + secrets.token_hex(6),
}

#: Every variable `inv init` fills in when it is empty in the template.
GENERATED_KEYS: frozenset[str] = frozenset(
    {*_INDEPENDENT, "LIVEKIT_TURN_USERNAME", "LIVEKIT_TURN_CREDENTIAL"}
)


def mask(value: str) -> str:
    """A fixed-width stand-in for a secret: reveals neither value nor length."""
    return "********" if value else "(empty)"


@dataclass(frozen=True, slots=True)
class InitResult:
    """What :func:`write_env_file` did.

    ``generated`` lists every variable given a fresh value; ``replaced`` the
    secrets among them that had a value before (``new_secrets``), whose old
    value the data volumes may still hold; ``kept`` the variables whose
    value came from the previous file.
    """

    path: Path
    generated: tuple[str, ...]
    backup: Path | None
    kept: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    #: The folder of the secret files, and the files (re)written there.
    secrets_dir: Path | None = None
    secret_files: tuple[str, ...] = ()


def parse_env_lines(text: str) -> dict[str, str]:
    """``KEY=value`` pairs of a dotenv text (comments and blank lines skipped).

    Only the subset this project writes: no quoting, no interpolation,
    no ``export``. Values are taken verbatim after the first ``=``.
    """
    values: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or "=" not in stripped:
            continue
        key, _, value = stripped.partition("=")
        values[key.strip()] = value.strip()
    return values


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600.

    The temporary file is created 0600 from the start (never world-readable
    for a moment) and renamed over ``path`` only once fully written.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700.

    ``mkdir(parents=True)`` gives the parents it makes the default mode
    (0755 here), so ``env/`` itself would be listable by every user.
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)


def write_env_file(
    template: Path,
    target: Path,
    *,
    force: bool = False,
    new_secrets: bool = False,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> InitResult:
    """Render ``template`` into ``target`` and write every secret to its own file.

    Refuses to replace an existing ``target`` unless ``force``. With
    ``force`` the file is rewritten from the current template but every value
    of the old file is kept (project name, ports, images, and variables the
    template does not know), and so is every secret, whether the old file or
    the secrets folder held it, because the running containers and the data
    volumes were made with them; only missing secrets are generated.
    ``new_secrets`` also replaces the secrets that had a value (see
    :attr:`InitResult.replaced`). The old file is kept beside it as
    ``<name>.bak-<time>``, mode 0600. ``overrides`` sets values outright
    (e.g. another project name or ports, or a secret).

    Secrets go to ``env/<project>/secrets/`` (see
    :mod:`infra_lib.stack.secrets`), written before the env file, so an env
    file never names a folder its secrets are not yet in. An env file that is
    not beside ``template`` gets the folder as an absolute
    ``INFRA_SECRETS_DIR``, since Compose would look beside the template.
    ``environ`` is the process environment: its ``COMPOSE_PROJECT_NAME`` and
    ``INFRA_SECRETS_DIR`` win over the file's, as they do for Compose, so the
    secrets land where the stack will look for them.
    """
    from infra_lib.stack.secrets import (
        SECRET_FILES,
        default_secrets_dir,
        read_stack_secrets,
        refuse_clashes,
        secrets_dir,
        write_stack_secrets,
    )

    if not template.is_file():
        raise ConfigError(f"{template} is missing; it is the template `inv init` fills in.")
    old_text: str | None = None
    old: dict[str, str] = {}
    if target.exists():
        if not force:
            raise EnvFileExists(
                f"{target} already exists and holds the stack's settings; not overwriting it. "
                "Use --force to rewrite it from the template keeping its values and secrets "
                "(the old file is kept as a backup), or edit it."
            )
        old_text = target.read_text(encoding="utf-8")
        old = parse_env_lines(old_text)

    fixed = dict(overrides or {})
    values: dict[str, str] = {}
    generated: list[str] = []
    kept: list[str] = []
    lines_out: list[str] = []
    line_of: dict[str, int] = {}
    for line in template.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or "=" not in stripped:
            lines_out.append(line)
            continue
        key, _, value = stripped.partition("=")
        key, value = key.strip(), value.strip()
        if key in fixed:
            value = fixed.pop(key)
        elif key in old and not (key in _INDEPENDENT and (new_secrets or not old[key])):
            value = old[key]
            kept.append(key)
        elif not value and key in _INDEPENDENT:
            value = _INDEPENDENT[key]()
            generated.append(key)
        values[key] = value
        line_of[key] = len(lines_out)
        lines_out.append(f"{key}={value}")

    env = environ or {}
    project = env.get("COMPOSE_PROJECT_NAME") or values.get("COMPOSE_PROJECT_NAME") or "infra"
    beside_template = target.resolve().parent == template.resolve().parent
    if env.get("INFRA_SECRETS_DIR"):
        values["INFRA_SECRETS_DIR"] = env["INFRA_SECRETS_DIR"]
    elif not values.get("INFRA_SECRETS_DIR") and not beside_template:
        values["INFRA_SECRETS_DIR"] = str(default_secrets_dir(target, project))
        if "INFRA_SECRETS_DIR" in line_of:
            lines_out[line_of["INFRA_SECRETS_DIR"]] = (
                f"INFRA_SECRETS_DIR={values['INFRA_SECRETS_DIR']}"
            )
        else:
            fixed["INFRA_SECRETS_DIR"] = values["INFRA_SECRETS_DIR"]
    directory = secrets_dir(target, project, values.get("INFRA_SECRETS_DIR") or None)

    # Each secret: given outright, kept (from the old env file or its file),
    # or generated. An old env file and a file that disagree stop everything:
    # the data volumes were made with one of the two.
    on_disk = read_stack_secrets(directory) if directory.is_dir() else {}
    if not new_secrets:
        refuse_clashes(old, on_disk, target, directory)
    secret_values: dict[str, str] = {}
    for key in SECRET_FILES:
        if key not in _INDEPENDENT:
            continue
        before = old.get(key) or on_disk.get(key) or ""
        if key in fixed:
            secret_values[key] = fixed.pop(key)
        elif before and not new_secrets:
            secret_values[key] = before
            kept.append(key)
        else:
            secret_values[key] = _INDEPENDENT[key]()
            generated.append(key)

    # The TURN credential LiveKit gives its clients derives from TURN_SECRET;
    # it is derived afresh on every write, which also renews its expiry.
    creds = turn_credentials(
        secret_values["TURN_SECRET"], "livekit", ttl_seconds=LIVEKIT_TURN_TTL_SECONDS
    )
    secret_values["LIVEKIT_TURN_CREDENTIAL"] = creds.credential
    generated.append("LIVEKIT_TURN_CREDENTIAL")
    if "LIVEKIT_TURN_USERNAME" in line_of:
        lines_out[line_of["LIVEKIT_TURN_USERNAME"]] = f"LIVEKIT_TURN_USERNAME={creds.username}"
        values["LIVEKIT_TURN_USERNAME"] = creds.username
        generated.append("LIVEKIT_TURN_USERNAME")
        if "LIVEKIT_TURN_USERNAME" in kept:
            kept.remove("LIVEKIT_TURN_USERNAME")

    extra = [k for k in old if k not in values and k not in fixed and k not in SECRET_FILES]
    if extra:
        lines_out.append("")
        lines_out.append("# Kept from the previous file (not in the template):")
        for key in extra:
            lines_out.append(f"{key}={old[key]}")
            kept.append(key)
    for key, value in fixed.items():
        lines_out.append(f"{key}={value}")

    had = {k for k in SECRET_FILES if old.get(k) or on_disk.get(k)}
    replaced = tuple(k for k in generated if k in had and k not in _DERIVED)
    backup: Path | None = None
    if old_text is not None:
        backup = target.with_name(f"{target.name}.bak-{time.strftime('%Y%m%d%H%M%S')}")
        write_private_file(backup, old_text)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = write_stack_secrets(
        directory, secret_values, livekit_api_key=values.get("LIVEKIT_API_KEY") or None
    )
    write_private_file(target, "\n".join(lines_out) + "\n")
    return InitResult(
        target, tuple(generated), backup, tuple(kept), replaced, directory, tuple(written)
    )


def tighten_private(files: Iterable[Path] = (), dirs: Iterable[Path] = ()) -> list[str]:
    """Make ``files`` mode 0600 and ``dirs`` 0700 if group or others have any access.

    Env files hold passwords; one copied with ``cp`` or extracted from an
    archive is often 0644. Missing paths are skipped. Returns one message per
    path changed (old and new mode), for the caller to show as a warning.
    """
    fixed: list[str] = []
    for path, wanted, kind in [
        *((Path(d), 0o700, "directory") for d in dirs),
        *((Path(f), 0o600, "file") for f in files),
    ]:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            path.chmod(wanted)
            could = "list" if kind == "directory" else "read"
            fixed.append(
                f"{kind} {path} holds secrets but was mode {mode:04o} (group or others could "
                f"{could} it); changed it to {wanted:04o}"
            )
    return fixed


def tighten_env_files(
    env_file: Path | None = None, *, service_dir: Path | None = None
) -> list[str]:
    """Re-tighten a stack's env file and its backups, or a folder of service env files.

    ``env_file`` (``.env``) and the ``<name>.bak-*`` copies beside it that
    ``inv init --force`` keeps; ``service_dir`` (``env/<project>``), its
    ``*.env`` files, its ``secrets/`` folder and its parent. See :func:`tighten_private`.
    """
    files: list[Path] = []
    dirs: list[Path] = []
    if env_file is not None:
        files += [env_file, *sorted(env_file.parent.glob(f"{env_file.name}.bak-*"))]
    if service_dir is not None:
        files += sorted(service_dir.glob("*.env"))
        dirs += [service_dir.parent, service_dir]
        # The stack's secret files, in their default folder.
        files += sorted(p for p in (service_dir / "secrets").glob("*") if p.is_file())
        dirs.append(service_dir / "secrets")
    return tighten_private(files=files, dirs=dirs)


def set_env_value(path: Path, key: str, value: str) -> bool:
    """Set ``key=value`` in the dotenv file ``path``, keeping every other line.

    The first ``key=`` line is replaced (later duplicates are dropped, so the
    file says one thing); a missing key is appended. Written atomically with
    mode 0600, and only when the text changes; true when it did.
    """
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; run `inv init` to create it.")
    if "\n" in value or "\n" in key or not key:
        raise ConfigError(f"cannot write {key!r} to {path}: keys and values are one line each.")
    old = path.read_text(encoding="utf-8")
    lines_out: list[str] = []
    seen = False
    for line in old.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#") and stripped.partition("=")[0].strip() == key:
            if not seen:
                lines_out.append(f"{key}={value}")
            seen = True
            continue
        lines_out.append(line)
    if not seen:
        lines_out.append(f"{key}={value}")
    text = "\n".join(lines_out) + "\n"
    if text == old:
        return False
    write_private_file(path, text)
    return True
