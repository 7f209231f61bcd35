"""The stack's secrets as files: one file per secret in a private folder.

A password in a container's environment is readable by anyone who may run
``docker inspect``; a password in ``.env`` sits in plaintext next to every
setting that is safe to share. So each secret of the stack has its own file
in ``env/<project>/secrets/`` (folder 0700, files 0600, git-ignored), and the
compose files hand them to the containers as Compose ``secrets:``
(``/run/secrets/<name>``), using the images' ``*_FILE`` variables where they
have them (``POSTGRES_PASSWORD_FILE``, ``MINIO_ROOT_PASSWORD_FILE``) and a
config file read from the secret for the others.

The folder is found the same way by Compose and by this library: without
``INFRA_SECRETS_DIR`` it is ``env/<project>/secrets`` beside the env file
(``compose/../env/...`` for Compose, which is why an env file kept elsewhere
records the folder as an absolute ``INFRA_SECRETS_DIR``).

Importing this module imports no driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from infra_lib.errors import ConfigError

__all__ = [
    "LIVEKIT_KEYS_FILE",
    "SECRET_FILES",
    "SERVICE_SECRETS",
    "SecretsMigration",
    "default_secrets_dir",
    "livekit_keys_text",
    "migrate_env_secrets",
    "missing_secret_files",
    "read_secret_file",
    "read_stack_secrets",
    "refuse_clashes",
    "secrets_dir",
    "sync_secret_files",
    "write_stack_secrets",
]

#: Every secret of the stack: its variable (as in ``.env`` before secrets
#: became files, and in the settings) and the file that holds it.
SECRET_FILES: Mapping[str, str] = {
    "POSTGRES_PASSWORD": "postgres-password",
    "REDIS_PASSWORD": "redis-password",
    "MINIO_ROOT_PASSWORD": "minio-root-password",
    "LIVEKIT_API_SECRET": "livekit-api-secret",
    "TURN_SECRET": "turn-secret",
    "LIVEKIT_TURN_CREDENTIAL": "livekit-turn-credential",
}

#: LiveKit's ``--key-file``: ``<API key>: <secret>``, derived from
#: ``LIVEKIT_API_KEY`` and the ``livekit-api-secret`` file.
LIVEKIT_KEYS_FILE = "livekit-keys"


def default_secrets_dir(env_file: Path, project: str) -> Path:
    """``env/<project>/secrets`` beside ``env_file``; Compose's default too."""
    return env_file.resolve().parent / "env" / project / "secrets"


def read_secret_file(path: Path, what: str) -> str:
    """The secret in ``path``, without the trailing newline editors add.

    A missing or empty file is a :class:`ConfigError` naming ``what`` (the
    variable it stands for), since a server started with an empty password
    would either refuse to start or accept anyone.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what}: the secret file {path} does not exist.") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read the secret file {path}: {exc.strerror}.") from None
    value = text.rstrip("\r\n")
    if not value or "\n" in value:
        raise ConfigError(f"{what}: the secret file {path} must hold exactly one non-empty line.")
    return value


def read_stack_secrets(directory: Path) -> dict[str, str]:
    """The secrets whose file exists in ``directory``, by variable name."""
    found: dict[str, str] = {}
    for key, name in SECRET_FILES.items():
        path = directory / name
        if path.is_file():
            found[key] = read_secret_file(path, key)
    return found


def livekit_keys_text(api_key: str, api_secret: str) -> str:
    """The body of LiveKit's key file for one key pair."""
    return f"{api_key}: {api_secret}\n"


def write_stack_secrets(
    directory: Path, values: Mapping[str, str], *, livekit_api_key: str | None = None
) -> list[str]:
    """Write each secret in ``values`` to its file in ``directory``; the names changed.

    The folder is made 0700 and each file is written atomically with mode
    0600, and only when its content changes (so a running container's
    bind-mounted file is not replaced for nothing). With ``livekit_api_key``
    and a LiveKit secret (given or already on disk) LiveKit's key file is
    kept in step.
    """
    from infra_lib.stack.envfile import make_private_dirs, tighten_private, write_private_file

    unknown = sorted(set(values) - set(SECRET_FILES))
    if unknown:
        raise ConfigError(f"not a secret of the stack: {', '.join(unknown)}")
    make_private_dirs(directory)
    tighten_private(dirs=[directory])
    wanted: dict[str, str] = {}
    for key, value in values.items():
        if not value or "\n" in value or "\r" in value:
            raise ConfigError(f"{key} must be one non-empty line to be written to a secret file.")
        wanted[SECRET_FILES[key]] = value + "\n"
    if livekit_api_key:
        secret = values.get("LIVEKIT_API_SECRET")
        path = directory / SECRET_FILES["LIVEKIT_API_SECRET"]
        if secret is None and path.is_file():
            secret = read_secret_file(path, "LIVEKIT_API_SECRET")
        if secret is not None:
            wanted[LIVEKIT_KEYS_FILE] = livekit_keys_text(livekit_api_key, secret)
    changed: list[str] = []
    for name, text in wanted.items():
        path = directory / name
        try:
            same = path.read_text(encoding="utf-8") == text
        except FileNotFoundError:
            same = False
        if same:
            continue
        write_private_file(path, text)
        changed.append(name)
    return changed


@dataclass(frozen=True, slots=True)
class SecretsMigration:
    """What :func:`migrate_env_secrets` did."""

    directory: Path
    written: tuple[str, ...]
    removed_from_env: tuple[str, ...]
    #: ``.env.bak-*`` copies the secrets now in files were removed from.
    scrubbed: tuple[Path, ...] = ()
    #: Copies still holding a secret that differs from its file, with its names.
    still_held: tuple[tuple[Path, tuple[str, ...]], ...] = ()


def migrate_env_secrets(env_file: Path, directory: Path) -> SecretsMigration:
    """Move the secrets that ``env_file`` still holds into files, values unchanged.

    The files are written (and synced) first, then the lines are dropped from
    the env file in one atomic rewrite, so an interruption leaves each secret
    in at least one place. A secret whose file already exists with another
    value is refused: the data volumes were made with one of the two, and
    only the user can say which.

    The ``<name>.bak-*`` copies that ``inv init --force`` left beside it lose
    every secret that now has a file with the same value. An older value (from
    before ``--new-secrets``) is left where it is and reported in
    :attr:`SecretsMigration.still_held`: it may be the one a volume still uses.
    """
    from infra_lib.stack.envfile import parse_env_lines, write_private_file

    if not env_file.is_file():
        raise ConfigError(f"{env_file} does not exist; run `inv init` to create it.")
    text = env_file.read_text(encoding="utf-8")
    values = parse_env_lines(text)
    held = {k: v for k, v in values.items() if k in SECRET_FILES and v}
    on_disk = read_stack_secrets(directory) if directory.is_dir() else {}
    refuse_clashes(held, on_disk, env_file, directory)
    written = write_stack_secrets(
        directory,
        {k: v for k, v in held.items() if k not in on_disk},
        livekit_api_key=values.get("LIVEKIT_API_KEY") or None,
    )
    removed = tuple(k for k in SECRET_FILES if k in values)
    if removed:
        write_private_file(env_file, _without(text, lambda key, value: True))
    now = read_stack_secrets(directory) if directory.is_dir() else {}
    scrubbed: list[Path] = []
    still_held: list[tuple[Path, tuple[str, ...]]] = []
    for copy in sorted(env_file.parent.glob(f"{env_file.name}.bak-*")):
        old = copy.read_text(encoding="utf-8")
        held_here = {k: v for k, v in parse_env_lines(old).items() if k in SECRET_FILES and v}
        if any(now.get(k) == v for k, v in held_here.items()):
            write_private_file(copy, _without(old, lambda key, value: now.get(key) == value))
            scrubbed.append(copy)
        other = tuple(sorted(k for k, v in held_here.items() if now.get(k) != v))
        if other:
            still_held.append((copy, other))
    return SecretsMigration(directory, tuple(written), removed, tuple(scrubbed), tuple(still_held))


def _without(text: str, drop: Callable[[str, str], bool]) -> str:
    """``text`` (an env file) without the secret lines ``drop(key, value)`` picks."""
    from infra_lib.stack.envfile import parse_env_lines

    kept = []
    for line in text.splitlines():
        parsed = parse_env_lines(line)
        if not line.strip().startswith("#") and len(parsed) == 1:
            ((key, value),) = parsed.items()
            if key in SECRET_FILES and drop(key, value):
                continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def refuse_clashes(
    env_values: Mapping[str, str], on_disk: Mapping[str, str], env_file: Path, directory: Path
) -> None:
    """Raise :class:`ConfigError` if ``env_file`` and a secret file hold different values.

    The data volumes were made with one of the two, and only the user can
    say which; nothing is written before this check.
    """
    clash = sorted(
        k
        for k in SECRET_FILES
        if env_values.get(k) and k in on_disk and on_disk[k] != env_values[k]
    )
    if clash:
        raise ConfigError(
            f"{', '.join(clash)} in {env_file} differ from the files in {directory}; the data "
            "volumes were made with one of them. Keep the right value in the file, delete the "
            f"line from {env_file.name}, and run the command again."
        )


def secrets_dir(env_file: Path, project: str, configured: str | None) -> Path:
    """The secrets folder for ``env_file``: ``INFRA_SECRETS_DIR`` or the default.

    ``INFRA_SECRETS_DIR`` must be absolute: Compose resolves a relative path
    against ``compose/``, this library against the env file, and the two must
    agree.
    """
    if configured:
        path = Path(configured)
        if not path.is_absolute():
            raise ConfigError(
                f"INFRA_SECRETS_DIR={configured!r} must be an absolute path (Compose and the "
                "tasks would resolve a relative one against different folders)."
            )
        return path
    return default_secrets_dir(env_file, project)


def sync_secret_files(env_file: Path, directory: Path) -> list[str]:
    """Keep an older checkout working: copy secrets ``env_file`` still holds into files.

    A checkout made before secrets were files has its passwords in ``.env``
    and none in ``directory``; Compose needs the files. Each missing file is
    written with the value of the env file (so the data volumes' passwords
    still match), and LiveKit's key file is kept in step with
    ``LIVEKIT_API_KEY``. Returns warnings for the caller to show; nothing is
    removed from the env file (``inv init --migrate-secrets`` does that).
    """
    from infra_lib.stack.envfile import parse_env_lines, tighten_private

    values = parse_env_lines(env_file.read_text(encoding="utf-8")) if env_file.is_file() else {}
    held = {k: v for k, v in values.items() if k in SECRET_FILES and v}
    missing = {k: v for k, v in held.items() if not (directory / SECRET_FILES[k]).is_file()}
    api_key = values.get("LIVEKIT_API_KEY") or None
    if not missing and not (directory / SECRET_FILES["LIVEKIT_API_SECRET"]).is_file():
        return []
    warnings = tighten_private(dirs=[directory])
    write_stack_secrets(directory, missing, livekit_api_key=api_key)
    if missing:
        warnings.append(
            f"{env_file.name} holds {', '.join(sorted(missing))} in plaintext; copied them "
            f"unchanged to {directory} for the containers. Run `inv init --migrate-secrets` "
            f"to remove them from {env_file.name}."
        )
    elif held:
        warnings.append(
            f"{env_file.name} still holds {', '.join(sorted(held))} in plaintext beside the "
            f"secret files; run `inv init --migrate-secrets` to remove them."
        )
    return warnings


#: The secret files each compose service is handed (``/run/secrets/<name>``).
SERVICE_SECRETS: Mapping[str, tuple[str, ...]] = {
    "postgres": ("postgres-password",),
    "redis": ("redis-password",),
    "minio": ("minio-root-password",),
    "livekit": (LIVEKIT_KEYS_FILE, "livekit-turn-credential"),
    "coturn": ("turn-secret",),
}


def missing_secret_files(directory: Path, services: Iterable[str]) -> list[Path]:
    """The secret files ``services`` need that are not in ``directory``."""
    return [
        directory / name
        for service in services
        for name in SERVICE_SECRETS.get(service, ())
        if not (directory / name).is_file()
    ]
