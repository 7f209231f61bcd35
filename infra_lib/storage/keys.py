"""The reference team's object key layout, and the checks that keep keys inside it.

Keys are built from ids and file names that arrive in HTTP requests, so each
segment is checked before it becomes part of a key: a user id of ``..`` or a
file name of ``a/../../profiles/x/avatar.jpg`` must not reach another
service's prefix. Segments are refused, never cleaned up: a silently changed
name is a different object nobody asked for.

Standard library only, so a service that just builds keys imports no SDK.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from uuid import UUID

from infra_lib.errors import ConfigError, InvalidObjectKey

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_SEGMENT_BYTES",
    "avatar_key",
    "board_attachment_key",
    "board_attachments_prefix",
    "check_bucket_name",
    "check_key",
    "check_prefix",
    "check_segment",
    "storage_key",
    "validate_key",
    "video_prefix",
]

#: S3's limit on a whole key.
MAX_KEY_BYTES = 1024
#: Most file systems' limit on one name; MinIO stores each segment as one.
MAX_SEGMENT_BYTES = 255

Segment = str | int | UUID

# S3's rules for new buckets: 3-63 characters of lowercase letters, digits,
# "." and "-", starting and ending with a letter or digit.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
# What a prefix segment may hold: nothing a policy could read as a pattern.
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")

# C0 and C1 controls, DEL and the Unicode line separators break logs, XML
# listings and HTTP headers; a backslash is a separator on Windows clients
# and in some proxies.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\\\\\u2028\u2029]")


def check_segment(value: Segment, *, what: str = "key segment") -> str:
    """Return ``value`` as a safe key segment, else raise InvalidObjectKey.

    A segment is non-empty, at most 255 bytes of UTF-8, holds no ``/``, no
    backslash and no control characters, and is not ``.`` or ``..``.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | UUID):
        raise InvalidObjectKey(
            f"{what} must be a string, an integer or a UUID, not {type(value).__name__}",
            key=repr(value),
        )
    text = str(value)
    problem = _segment_problem(text)
    if problem:
        raise InvalidObjectKey(f"{what} {_show(text)} {problem}", key=text)
    return text


def _show(text: str) -> str:
    """``repr`` of ``text``, shortened so a hostile 1 kB key does not flood a log line."""
    return repr(text) if len(text) <= 80 else repr(text[:60]) + f"... ({len(text)} characters)"


def _segment_problem(text: str) -> str | None:
    if not text:
        return "is empty"
    if text in (".", ".."):
        return "is a relative path component ('.' or '..')"
    if "/" in text:
        return "contains '/', which would add a level to the key"
    bad = _FORBIDDEN.search(text)
    if bad:
        return (
            f"contains the forbidden character {bad.group()!r} (a control character, "
            "line separator or '\\')"
        )
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_SEGMENT_BYTES:
        return f"is {size} bytes of UTF-8; at most {MAX_SEGMENT_BYTES} are allowed"
    if not _encodable(text):
        return "is not valid Unicode (it holds a lone surrogate)"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def avatar_key(user_id: Segment) -> str:
    """``profiles/{userId}/avatar.jpg`` (user-service)."""
    return f"profiles/{check_segment(user_id, what='user id')}/avatar.jpg"


def board_attachments_prefix(board_id: Segment) -> str:
    """``boards/{boardId}/attachments/`` (board-service), with its trailing ``/``."""
    return f"boards/{check_segment(board_id, what='board id')}/attachments/"


def board_attachment_key(board_id: Segment, filename: str) -> str:
    """``boards/{boardId}/attachments/{filename}`` (board-service)."""
    name = check_segment(filename, what="attachment file name")
    return board_attachments_prefix(board_id) + name


def storage_key(workspace_id: Segment, folder_id: Segment, file_id: Segment) -> str:
    """``storage/{workspaceId}/{folderId}/{fileId}`` (storage-service)."""
    return (
        f"storage/{check_segment(workspace_id, what='workspace id')}"
        f"/{check_segment(folder_id, what='folder id')}"
        f"/{check_segment(file_id, what='file id')}"
    )


def video_prefix(room_id: Segment) -> str:
    """``video/{roomId}/`` (video-service), with its trailing ``/``."""
    return f"video/{check_segment(room_id, what='room id')}/"


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe object key, else raise InvalidObjectKey.

    Safe: at most 1024 bytes of UTF-8, no leading or trailing ``/``, and
    every ``/``-separated segment passes :func:`check_segment`. Cheap enough
    to run on every presigned URL.
    """
    # Fast path for the usual short ASCII key: a few substring tests and one
    # character class. Anything unusual (a segment starting with ".", say)
    # falls through to the segment-by-segment check, which decides.
    if (
        type(key) is str
        and 0 < len(key) <= MAX_SEGMENT_BYTES
        and key.isascii()
        and key[0] not in "/."
        and key[-1] != "/"
        and "//" not in key
        and "/." not in key
        and _FORBIDDEN.search(key) is None
    ):
        return key
    return _check_key_slowly(key)


def _check_key_slowly(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidObjectKey(
            f"object key must be a string, not {type(key).__name__}", key=repr(key)
        )
    if not key:
        raise InvalidObjectKey("object key is empty", key=key)
    size = len(key.encode("utf-8", errors="surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise InvalidObjectKey(
            f"object key {_show(key)} is {size} bytes of UTF-8; S3 allows at most {MAX_KEY_BYTES}",
            key=key,
        )
    if key.startswith("/"):
        raise InvalidObjectKey(f"object key {_show(key)} must not start with '/'", key=key)
    for segment in key.split("/"):
        problem = _segment_problem(segment)
        if problem:
            raise InvalidObjectKey(
                f"object key {_show(key)} is refused: segment {_show(segment)} {problem}",
                key=key,
            )
    return key


def validate_key(key: str, *, allowed_prefixes: Iterable[str]) -> str:
    """Return ``key`` if it is safe (:func:`check_key`) and starts with an allowed prefix.

    For keys that arrive whole (a client names the object it uploaded).
    ``allowed_prefixes`` are the caller's own prefixes, e.g. ``("boards/",)``;
    a prefix should end with ``/`` so that ``boards/`` does not admit
    ``boards-archive/``. Raises InvalidObjectKey naming the key and the
    offending segment or the prefixes.
    """
    check_key(key)
    # A bare string would otherwise be read as a set of one-character prefixes.
    prefixes = (allowed_prefixes,) if isinstance(allowed_prefixes, str) else tuple(allowed_prefixes)
    if not any(key.startswith(prefix) for prefix in prefixes):
        allowed = ", ".join(repr(p) for p in prefixes) or "(none)"
        raise InvalidObjectKey(
            f"object key {_show(key)} is outside the allowed prefixes {allowed}", key=key
        )
    return key


def check_prefix(prefix: str, *, what: str = "key prefix") -> str:
    """Return ``prefix`` if it looks like ``name/`` or ``a/b/`` with safe segments.

    Non-empty and ending in ``/``, so that ``boards/`` cannot be read as
    also covering ``boards-archive/``. Each segment holds only ASCII letters,
    digits, ``.``, ``_`` and ``-`` (and is not ``.`` or ``..``): prefixes
    end up in IAM and bucket policies, where ``*`` and ``?`` are wildcards
    and ``${...}`` a policy variable, so ``b*/`` or ``${aws:username}/``
    would reach other services' objects.
    """
    if not isinstance(prefix, str) or not prefix.endswith("/") or prefix == "/":
        raise InvalidObjectKey(
            f"{what} {prefix!r} must look like 'name/' or 'a/b/': non-empty, no leading "
            "'/', and a trailing '/'",
            key=str(prefix),
        )
    for segment in prefix[:-1].split("/"):
        check_segment(segment, what=f"segment of {what} {_show(prefix)}")
        if not _PREFIX_SEGMENT.fullmatch(segment):
            bad = next(c for c in segment if not _PREFIX_SEGMENT.fullmatch(c))
            raise InvalidObjectKey(
                f"{what} {_show(prefix)} holds {bad!r}; prefixes may hold only ASCII letters, "
                "digits, '.', '_', '-' and '/' (policies read '*', '?' and '${...}' as "
                "wildcards and variables)",
                key=prefix,
            )
    return prefix


def check_bucket_name(bucket: str) -> str:
    """Return ``bucket`` if S3 and MinIO accept it as a new bucket's name, else ConfigError."""
    if (
        not isinstance(bucket, str)
        or not _BUCKET.fullmatch(bucket)
        or ".." in bucket
        or ".-" in bucket
        or "-." in bucket
        or _IPV4.fullmatch(bucket)
        or bucket.startswith(("xn--", "sthree-"))
        or bucket.endswith(("-s3alias", "--ol-s3"))
    ):
        raise ConfigError(
            f"invalid bucket name {bucket!r}: use 3-63 lowercase letters, digits, '.' and "
            "'-', starting and ending with a letter or digit, not shaped like an IP address"
        )
    return bucket
