"""Name the extra to install when an optional SDK is missing.

Each backend's SDK comes with an extra (``pip install "infra-lib[livekit]"``)
and is imported only when a feature needs it, so a missing one surfaces far
from where it was chosen. :func:`optional_sdks` turns that bare
``ModuleNotFoundError`` into :class:`~infra_lib.errors.MissingExtra` saying
which extra brings the module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from infra_lib.errors import MissingExtra

__all__ = ["EXTRA_OF", "optional_sdks"]

#: Top-level module of each optional SDK -> the extra of infra-lib that installs it.
EXTRA_OF: dict[str, str] = {
    "psycopg": "postgres",
    "redis": "redis",
    "minio": "storage",
    "boto3": "storage",
    "botocore": "storage",
    "livekit": "livekit",
    "python_on_whales": "stack",
    "invoke": "stack",
    "rich": "stack",
    "cryptography": "stack",
}


@contextmanager
def optional_sdks(feature: str = "") -> Iterator[None]:
    """Raise MissingExtra when the block fails to import an optional SDK.

    Other import errors (a module of infra_lib itself, a broken install of
    some other package) pass through unchanged. ``feature`` names what was
    being used, for the message (``"LiveKit tokens"``).
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        extra = EXTRA_OF.get(top)
        if extra is None:
            raise
        what = f"{feature} needs" if feature else "this needs"
        raise MissingExtra(
            f"{what} the {top!r} package, which is not installed. Install the extra that "
            f'brings it: pip install "infra-lib[{extra}]" (or add {extra!r} to the extras '
            "your project already requires).",
            module=top,
            extra=extra,
        ) from exc
