"""Presigned URLs and POST policies for browser uploads and downloads.

The reference flow: a client asks its backend for an upload, the backend
presigns one, and the client sends the bytes straight to storage. Nothing
here talks to the server: signing is local, so presigning works while the
server is down and costs microseconds.

Every URL is signed for :attr:`~infra_lib.storage.config.S3Config.public_endpoint`,
the host the client will send in its ``Host`` header, because SigV4 covers
that header: a URL signed for ``127.0.0.1:9000`` and rewritten to
``files.example.com`` afterwards is refused.

Two signers: the minio SDK (the default, fastest) and botocore (what most
other tooling uses); :class:`Presigner` takes ``backend=`` to pick one.
**Every presigned PUT pins its Content-Type**, with either backend: the
signature covers the header, so a client that sends another type is refused
(403 SignatureDoesNotMatch) and an "avatar" cannot be stored as
``text/html``. botocore does that by itself; the minio SDK signs only the
host, so the minio backend signs PUTs with :mod:`infra_lib.storage.sigv4`
(the same algorithm, standard library only) and keeps the SDK for GETs and
POST policies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from infra_lib._extras import optional_sdks
from infra_lib.errors import ConfigError
from infra_lib.storage.config import S3Config, check_expiry
from infra_lib.storage.keys import check_bucket_name, check_key, check_prefix
from infra_lib.storage.sigv4 import QuerySigner

if TYPE_CHECKING:
    from minio import Minio

__all__ = ["MAX_POST_SIZE", "PresignedPost", "Presigner", "boto3_client", "check_content_type"]

#: The largest object one POST upload may carry (S3's limit for a single PUT or POST).
MAX_POST_SIZE = 5 * 1024**3

# type "/" subtype, RFC 6838 restricted names, optional parameters; no CR/LF,
# since the value ends up in a header.
_CONTENT_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r"(?:\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(?:[A-Za-z0-9!#$&^_.+-]+|\"[^\"\r\n]*\"))*"
)
# A bare type followed by "/", for "any image": "image/".
_CONTENT_TYPE_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/")
# Entries kept per cache of checked arguments, so a caller signing for
# endlessly many buckets or types cannot grow a Presigner without bound.
_CACHE_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class PresignedPost:
    """What a browser needs for a ``multipart/form-data`` POST upload.

    Send every entry of ``fields`` as a form field, then the file as the last
    field, named ``file``. ``fields["key"]`` ends in ``${filename}`` (the
    server substitutes the uploaded file's name); replace it with any key
    under the policy's prefix.
    """

    url: str
    fields: Mapping[str, str] = field(default_factory=dict)


def check_content_type(content_type: str, *, allow_prefix: bool = False) -> str:
    """Return ``content_type`` if it is a well-formed media type, else ConfigError.

    With ``allow_prefix``, a bare ``type/`` (``"image/"``) is accepted too.
    """
    if isinstance(content_type, str) and (
        _CONTENT_TYPE.fullmatch(content_type)
        or (allow_prefix and _CONTENT_TYPE_PREFIX.fullmatch(content_type))
    ):
        return content_type
    wanted = "'type/subtype' or a prefix such as 'image/'" if allow_prefix else "'type/subtype'"
    raise ConfigError(f"content type {content_type!r} is not a media type; use {wanted}")


class Presigner:
    """Presigns GET and PUT URLs and POST policies with one config's credentials.

    Build it once (at start-up) and reuse it: it holds a signing client for
    the public endpoint, and signing itself is local and thread-safe. Keys
    are checked with :func:`~infra_lib.storage.keys.check_key`; expiries with
    :func:`~infra_lib.storage.config.check_expiry` (1 second to 7 days).
    """

    __slots__ = (
        "_backend",
        "_boto",
        "_boto_errors",
        "_buckets",
        "_client",
        "_config",
        "_put_signer",
        "_seconds",
        "_types",
    )

    def __init__(self, config: S3Config, *, backend: Literal["minio", "boto3"] = "minio") -> None:
        if backend not in ("minio", "boto3"):
            raise ConfigError(f"presign backend must be 'minio' or 'boto3', not {backend!r}")
        self._config = config
        self._backend: Literal["minio", "boto3"] = backend
        # Arguments already checked (an application uses a handful of each).
        self._buckets: set[str] = set()
        self._types: set[str] = set()
        self._seconds: dict[timedelta, int] = {}
        # Both signers are cheap to keep and expensive to build (the botocore
        # client loads its service model), so they are made once here.
        self._client: Minio = config.client(public=True)
        self._put_signer = QuerySigner(
            endpoint=config.public_endpoint,
            access_key=config.access_key,
            secret_key=config.secret_key,
            region=config.region,
            addressing=config.addressing,
        )
        self._boto: Any = None
        self._boto_errors: tuple[type[Exception], ...] = ()
        if backend == "boto3":
            with optional_sdks("the boto3 presign backend"):
                import botocore.exceptions  # type: ignore[import-untyped]

            self._boto = boto3_client(config, public=True)
            # Argument problems (a bad bucket name) surface as these; signing
            # itself never goes to the network.
            self._boto_errors = (botocore.exceptions.BotoCoreError, ValueError)

    @property
    def config(self) -> S3Config:
        """The config URLs are signed with."""
        return self._config

    @property
    def backend(self) -> Literal["minio", "boto3"]:
        """Which SDK signs: ``"minio"`` or ``"boto3"``."""
        return self._backend

    def put_url(self, bucket: str, key: str, *, content_type: str, expires: timedelta) -> str:
        """A URL to ``PUT`` one object, valid for ``expires``.

        The client must send the body with ``Content-Type: <content_type>``:
        the header is signed (with either backend), so the server refuses
        another type, or none, with 403 SignatureDoesNotMatch.
        """
        # Expiries, buckets and content types repeat from call to call; the
        # caches keep the wrapper within a few percent of the bare SDK call.
        seconds = self._seconds.get(expires) if type(expires) is timedelta else None
        if seconds is None:
            seconds = self._check_expiry(expires)
        if bucket not in self._buckets:
            self._check_bucket(bucket)
        check_key(key)
        if content_type not in self._types:
            self._check_content_type(content_type)
        if self._boto is not None:
            return self._boto_url(
                "put_object",
                {"Bucket": bucket, "Key": key, "ContentType": content_type},
                seconds,
                bucket,
                key,
            )
        return self._put_signer.url(
            "PUT", bucket, key, expires=seconds, headers={"Content-Type": content_type}
        )

    def get_url(
        self,
        bucket: str,
        key: str,
        *,
        expires: timedelta,
        response_content_type: str | None = None,
    ) -> str:
        """A URL to ``GET`` one object, valid for ``expires``.

        ``response_content_type`` makes the server answer with that
        Content-Type instead of the stored one (e.g. to force a download).
        """
        seconds = self._seconds.get(expires) if type(expires) is timedelta else None
        if seconds is None:
            seconds = self._check_expiry(expires)
        if bucket not in self._buckets:
            self._check_bucket(bucket)
        check_key(key)
        if response_content_type is not None and response_content_type not in self._types:
            self._check_content_type(response_content_type)
        if self._boto is not None:
            params = {"Bucket": bucket, "Key": key}
            if response_content_type is not None:
                params["ResponseContentType"] = response_content_type
            return self._boto_url("get_object", params, seconds, bucket, key)
        extra: dict[str, str | list[str] | tuple[str]] | None = (
            {"response-content-type": response_content_type}
            if response_content_type is not None
            else None
        )
        try:
            url: str = self._client.get_presigned_url(
                "GET", bucket, key, expires, response_headers=extra
            )
        except ValueError as exc:
            raise _refused("GET URL", bucket, key, exc) from exc
        return url

    def post_policy(
        self,
        bucket: str,
        *,
        key_prefix: str,
        content_type: str,
        max_size: int,
        min_size: int = 0,
        expires: timedelta,
    ) -> PresignedPost:
        """A browser form upload limited to keys under ``key_prefix``, a type and a size.

        ``content_type`` is an exact type (``"image/jpeg"``) or a prefix
        ending in ``/`` (``"image/"``); sizes are bytes, inclusive. The
        server refuses an upload outside any of these (403 for the key or
        type, 400 EntityTooLarge / EntityTooSmall for the size).
        """
        check_expiry(expires)
        self._check_bucket(bucket)
        check_prefix(key_prefix, what="POST policy key prefix")
        check_content_type(content_type, allow_prefix=True)
        if isinstance(min_size, bool) or isinstance(max_size, bool):
            raise ConfigError("POST policy sizes must be integers, not booleans")
        if not 0 <= min_size <= max_size <= MAX_POST_SIZE:
            raise ConfigError(
                f"POST policy sizes must satisfy 0 <= min_size ({min_size}) <= max_size "
                f"({max_size}) <= {MAX_POST_SIZE} (5 GiB, the S3 limit for one upload)"
            )
        exact = not content_type.endswith("/")
        if self._boto is not None:
            return self._boto_post(
                bucket, key_prefix, content_type, exact, min_size, max_size, expires
            )
        from minio.datatypes import PostPolicy

        try:
            policy = PostPolicy(bucket, datetime.now(UTC) + expires)
            policy.add_starts_with_condition("key", key_prefix)
            if exact:
                policy.add_equals_condition("Content-Type", content_type)
            else:
                policy.add_starts_with_condition("Content-Type", content_type)
            policy.add_content_length_range_condition(min_size, max_size)
            fields: dict[str, str] = dict(self._client.presigned_post_policy(policy))
        except ValueError as exc:
            raise _refused("POST policy", bucket, None, exc) from exc
        fields["key"] = key_prefix + "${filename}"
        if exact:
            fields["Content-Type"] = content_type
        return PresignedPost(url=self._bucket_url(bucket), fields=fields)

    def _check_bucket(self, bucket: str) -> None:
        check_bucket_name(bucket)
        if len(self._buckets) < _CACHE_LIMIT:
            self._buckets.add(bucket)

    def _check_content_type(self, content_type: str) -> None:
        check_content_type(content_type)
        if len(self._types) < _CACHE_LIMIT:
            self._types.add(content_type)

    def _check_expiry(self, expires: timedelta) -> int:
        seconds = check_expiry(expires)
        if len(self._seconds) < _CACHE_LIMIT:
            self._seconds[expires] = seconds
        return seconds

    def _bucket_url(self, bucket: str) -> str:
        url = urlsplit(self._config.public_endpoint)
        if self._config.addressing == "virtual":
            return f"{url.scheme}://{bucket}.{url.netloc}/"
        return f"{url.scheme}://{url.netloc}/{bucket}"

    def _boto_url(
        self, operation: str, params: dict[str, str], seconds: int, bucket: str, key: str
    ) -> str:
        try:
            url: str = self._boto.generate_presigned_url(
                operation, Params=params, ExpiresIn=seconds
            )
        except self._boto_errors as exc:
            raise _refused(operation, bucket, key, exc) from exc
        return url

    def _boto_post(
        self,
        bucket: str,
        key_prefix: str,
        content_type: str,
        exact: bool,
        min_size: int,
        max_size: int,
        expires: timedelta,
    ) -> PresignedPost:
        conditions: list[Any] = [
            ["starts-with", "$key", key_prefix],
            ["content-length-range", min_size, max_size],
        ]
        fields: dict[str, str] = {}
        if exact:
            conditions.append({"Content-Type": content_type})
            fields["Content-Type"] = content_type
        else:
            conditions.append(["starts-with", "$Content-Type", content_type])
        try:
            post = self._boto.generate_presigned_post(
                bucket,
                key_prefix + "${filename}",
                Fields=fields,
                Conditions=conditions,
                ExpiresIn=check_expiry(expires),
            )
        except self._boto_errors as exc:
            raise _refused("POST policy", bucket, None, exc) from exc
        return PresignedPost(url=str(post["url"]), fields=dict(post["fields"]))


def _refused(what: str, bucket: str, key: str | None, exc: Exception) -> ConfigError:
    # Signing is local: the SDK's only complaints are about its arguments
    # (an invalid bucket name, mostly).
    where = f"bucket {bucket!r}" + (f", key {key!r}" if key else "")
    return ConfigError(f"cannot presign a {what} for {where}: {exc}")


def boto3_client(config: S3Config, *, public: bool = True) -> Any:
    """A botocore S3 client for ``public_endpoint`` (``endpoint`` with ``public=False``).

    Signature V4, the config's region and addressing style, its TLS settings
    and timeouts; these explicit settings win over anything botocore would
    otherwise take from ``AWS_*`` variables or ``~/.aws``. Checksums are only
    computed where S3 requires them: botocore 1.36 started adding CRC32
    checksums to every upload, which some S3-compatible servers and
    presigned URLs do not expect.
    """
    with optional_sdks("botocore clients"):
        import botocore.config  # type: ignore[import-untyped]
        import botocore.session  # type: ignore[import-untyped]

    session = botocore.session.Session()
    return session.create_client(
        "s3",
        endpoint_url=config.public_endpoint if public else config.endpoint,
        region_name=config.region,
        aws_access_key_id=config.access_key,
        aws_secret_access_key=config.secret_key,
        verify=config.ca_file if config.ca_file else config.verify_tls,
        config=botocore.config.Config(
            signature_version="s3v4",
            s3={"addressing_style": config.addressing},
            connect_timeout=config.timeout,
            read_timeout=config.timeout,
            retries={"max_attempts": 3, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
