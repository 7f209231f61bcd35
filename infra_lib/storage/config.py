"""How to reach one S3-compatible server: endpoints, credentials, TLS, addressing.

Built once at the edge (a task, a fixture, a service's start-up) and passed
in. Importing this module imports neither minio nor boto3; only the methods
that build clients do, so a service that only builds keys or checks an
expiry does not pay for an SDK.

Two endpoints, because the host a browser reaches is often not the host a
backend reaches: a presigned URL's signature covers the ``Host`` header, so it
must be made for the host the client will send (:attr:`S3Config.public_endpoint`),
while bucket administration talks to :attr:`S3Config.endpoint`.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from infra_lib._extras import optional_sdks
from infra_lib.errors import ConfigError, InfraError, ProvisionError, ServiceUnavailable

if TYPE_CHECKING:
    import urllib3
    from minio import Minio, MinioAdmin

    from infra_lib.stack.settings import StackSettings

__all__ = [
    "MAX_PRESIGN_EXPIRY",
    "S3Config",
    "check_expiry",
    "translate_errors",
]

#: The longest a SigV4 presigned URL may live (S3 and MinIO refuse longer).
MAX_PRESIGN_EXPIRY = timedelta(days=7)
_MAX_EXPIRY_SECONDS = int(MAX_PRESIGN_EXPIRY.total_seconds())

# Error codes that mean "these credentials are wrong", as opposed to "these
# credentials may not do that".
_BAD_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Config:
    """Connection settings of one S3-compatible server (the compose MinIO or a managed one).

    ``endpoint`` is the URL this process uses (``http://127.0.0.1:9000``);
    ``public_endpoint`` is the URL clients of presigned URLs use (a browser,
    another container); empty means the same as ``endpoint``. ``addressing``
    is ``"path"`` (``host/bucket/key``, what MinIO serves without DNS
    set-up) or ``"virtual"`` (``bucket.host/key``, AWS's default).

    ``minio_admin`` says the server is MinIO and these credentials may use
    its admin API (users, policies, quotas); against AWS S3 or another
    server leave it false and those features report themselves unsupported.
    ``secret_key`` is left out of ``repr``.
    """

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    public_endpoint: str = ""
    region: str = "us-east-1"
    addressing: Literal["path", "virtual"] = "path"
    verify_tls: bool = True
    ca_file: str | None = None
    minio_admin: bool = False
    #: Seconds to wait for a connection and for each response.
    timeout: float = 10.0

    def __post_init__(self) -> None:
        _check_endpoint(self.endpoint, "endpoint")
        if self.public_endpoint:
            _check_endpoint(self.public_endpoint, "public_endpoint")
        else:
            object.__setattr__(self, "public_endpoint", self.endpoint)
        if not self.access_key:
            raise ConfigError("S3 access_key is empty; set MINIO_ROOT_USER or pass access_key=.")
        if not self.secret_key:
            raise ConfigError(
                f"S3 secret_key of access key {self.access_key!r} is empty; set "
                "MINIO_ROOT_PASSWORD or pass secret_key=."
            )
        if not self.region:
            raise ConfigError("S3 region is empty; MinIO's default is 'us-east-1'.")
        if self.addressing not in ("path", "virtual"):
            raise ConfigError(
                f"S3 addressing must be 'path' or 'virtual', not {self.addressing!r}."
            )
        if not math.isfinite(self.timeout) or self.timeout <= 0:
            raise ConfigError(f"S3 timeout must be a positive number, not {self.timeout}.")
        if self.ca_file is not None and not self.verify_tls:
            raise ConfigError("ca_file is set but verify_tls is off; drop one of them.")

    @classmethod
    def from_stack(cls, settings: StackSettings) -> S3Config:
        """The stack's MinIO with its root credentials, or ``S3_ENDPOINT``'s store."""
        if settings.s3_endpoint is not None:
            return cls(
                endpoint=settings.s3_endpoint,
                access_key=settings.required("s3_access_key_id"),
                secret_key=settings.secret("s3_secret_access_key"),
                region=settings.s3_region,
                addressing=settings.s3_addressing,
                minio_admin=False,
            )
        return cls(
            endpoint=f"http://{settings.url_host}:{settings.minio_api_port}",
            access_key=settings.required("minio_root_user"),
            secret_key=settings.secret("minio_root_password"),
            minio_admin=True,
        )

    @property
    def secure(self) -> bool:
        """True when ``endpoint`` is ``https``."""
        return self.endpoint.startswith("https:")

    def pool_manager(self) -> urllib3.PoolManager:
        """An urllib3 pool with this config's TLS settings and short timeouts.

        The SDKs' own defaults wait five minutes and retry five times, which
        turns "the stack is down" into a long hang; they also read
        ``SSL_CERT_FILE`` from the environment, which this library does not.
        """
        import certifi
        import urllib3

        return urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
            maxsize=10,
            cert_reqs="CERT_REQUIRED" if self.verify_tls else "CERT_NONE",
            ca_certs=self.ca_file or certifi.where(),
            retries=urllib3.Retry(
                total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)
            ),
        )

    def client(
        self, *, public: bool = False, http_client: urllib3.PoolManager | None = None
    ) -> Minio:
        """A minio SDK client for ``endpoint`` (``public_endpoint`` with ``public=True``).

        The region is set, so the client never asks the server for a bucket's
        location before signing: presigning stays offline.
        """
        with optional_sdks("object storage"):
            from minio import Minio

        url = urlsplit(self.public_endpoint if public else self.endpoint)
        client = Minio(
            url.netloc,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=url.scheme == "https",
            region=self.region,
            http_client=http_client or self.pool_manager(),
            cert_check=self.verify_tls,
        )
        if self.addressing == "virtual":
            client.enable_virtual_style_endpoint()  # type: ignore[no-untyped-call]
        else:
            client.disable_virtual_style_endpoint()  # type: ignore[no-untyped-call]
        return client

    def admin_client(self, *, http_client: urllib3.PoolManager | None = None) -> MinioAdmin:
        """A MinIO admin API client; ConfigError unless ``minio_admin`` is set."""
        if not self.minio_admin:
            raise ConfigError(
                f"the server at {self.endpoint} is not configured as MinIO (minio_admin=False); "
                "its admin API (users, policies, quotas) is MinIO-only."
            )
        from minio import MinioAdmin
        from minio.credentials.providers import StaticProvider

        url = urlsplit(self.endpoint)
        return MinioAdmin(
            endpoint=url.netloc,
            credentials=StaticProvider(self.access_key, self.secret_key),
            region=self.region,
            secure=url.scheme == "https",
            cert_check=self.verify_tls,
            http_client=http_client or self.pool_manager(),
        )


def _check_endpoint(url: str, what: str) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"S3 {what} {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"S3 {what} {url!r} must be an http:// or https:// URL with a host, "
            "e.g. http://127.0.0.1:9000"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        # The SDKs sign the bucket path from the root; a path prefix would break signatures.
        raise ConfigError(
            f"S3 {what} {url!r} must be scheme://host[:port] only: no path, query or user info"
        )
    if port == 0:
        raise ConfigError(f"S3 {what} {url!r} has port 0")


def check_expiry(expires: timedelta) -> int:
    """Whole seconds of a presigned URL's lifetime; ConfigError outside 1 s to 7 days."""
    if not isinstance(expires, timedelta):
        raise ConfigError(
            f"expiry must be a datetime.timedelta, not {type(expires).__name__}; "
            "e.g. timedelta(minutes=15)"
        )
    seconds = expires.total_seconds()
    if seconds < 1 or seconds > _MAX_EXPIRY_SECONDS or seconds != int(seconds):
        raise ConfigError(
            f"expiry {expires} is out of bounds: a presigned URL lives a whole number of "
            f"seconds from 1 second to 7 days ({_MAX_EXPIRY_SECONDS} s), the S3 maximum"
        )
    return int(seconds)


@contextmanager
def translate_errors(
    config: S3Config,
    action: str,
    *,
    bucket: str | None = None,
    key: str | None = None,
    access_key: str | None = None,
    secrets: Iterable[str | None] = (),
) -> Iterator[None]:
    """Turn minio, urllib3 and botocore errors raised inside the block into infra_lib's.

    ``action`` says what was being done ("create bucket"); ``bucket``,
    ``key`` and ``access_key`` (default: the config's) go into the message.
    The config's secret and every string in ``secrets`` are blanked out of
    it, in case a server or driver ever echoes one back.
    """
    try:
        yield
    except InfraError:
        raise
    except Exception as exc:
        translated = _translate(
            exc,
            config,
            action,
            bucket=bucket,
            key=key,
            access_key=access_key or config.access_key,
            secrets=[config.secret_key, *(s for s in secrets if s)],
        )
        if translated is None:
            raise
        raise translated from exc


def _translate(
    exc: Exception,
    config: S3Config,
    action: str,
    *,
    bucket: str | None,
    key: str | None,
    access_key: str,
    secrets: list[str],
) -> InfraError | None:
    # Only SDKs already imported can have raised; looking them up in
    # sys.modules keeps a minio-only caller from importing botocore here.
    minio_error = sys.modules.get("minio.error")
    botocore_exc = sys.modules.get("botocore.exceptions")
    urllib3_exc = sys.modules.get("urllib3.exceptions")

    def scrub(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "********")
        return text

    where = config.endpoint
    target = ""
    if bucket:
        target = f" (bucket {bucket!r}" + (f", key {key!r})" if key else ")")
    doing = f"{action}{target}"

    code: str | None = None
    detail = ""
    if minio_error is not None and isinstance(exc, minio_error.S3Error):
        code, detail = exc.code, f"{exc.code}: {exc.message}"
    elif minio_error is not None and isinstance(exc, minio_error.MinioAdminException):
        code, detail = _admin_code(exc)
    elif botocore_exc is not None and isinstance(exc, botocore_exc.ClientError):
        error = exc.response.get("Error", {})
        code, detail = error.get("Code"), f"{error.get('Code')}: {error.get('Message')}"
    elif minio_error is not None and isinstance(exc, minio_error.ServerError):
        return ServiceUnavailable(
            f"MinIO at {where} failed while trying to {doing}: {scrub(str(exc))}. Check "
            "its health and logs with `inv status`.",
            service="minio",
        )
    elif minio_error is not None and isinstance(exc, minio_error.InvalidResponseError):
        return ServiceUnavailable(
            f"the server at {where} does not answer like S3 while trying to {doing} "
            f"({scrub(str(exc))[:200]}). Check that MINIO_API_PORT / the endpoint point at "
            "MinIO's API port, not the console or another program.",
            service="minio",
        )
    elif (urllib3_exc is not None and isinstance(exc, urllib3_exc.HTTPError)) or (
        botocore_exc is not None
        and isinstance(exc, botocore_exc.HTTPClientError | botocore_exc.ConnectionError)
    ):
        return ServiceUnavailable(
            f"cannot reach MinIO at {where} to {doing} ({scrub(str(exc))}). Is the stack up? "
            "Check with `inv status` and start it with `inv up`; check MINIO_API_PORT and "
            "INFRA_PUBLIC_HOST in .env.",
            service="minio",
        )
    else:
        return None

    if code in _BAD_CREDENTIAL_CODES:
        return ServiceUnavailable(
            f"MinIO at {where} rejected the credentials of access key {access_key!r} while "
            f"trying to {doing} ({code}). For the compose stack, check that MINIO_ROOT_USER "
            "and MINIO_ROOT_PASSWORD in .env are what the running server was started with "
            "(`inv status`; `inv up` recreates the container after a change).",
            service="minio",
        )
    if code in ("AccessDenied", "XMinioAdminAccessDenied"):
        return ProvisionError(
            f"MinIO at {where} does not permit access key {access_key!r} to {doing}: "
            f"{scrub(detail)}. Provisioning needs the root credentials (MINIO_ROOT_USER)."
        )
    if code == "NoSuchBucket":
        return ProvisionError(
            f"cannot {doing} at {where}: the bucket does not exist. Create it first "
            "(BucketManager.ensure_bucket, or `inv provision`)."
        )
    return ProvisionError(f"MinIO at {where} refused to {doing}: {scrub(detail)}")


def _admin_code(exc: BaseException) -> tuple[str | None, str]:
    status = str(getattr(exc, "_code", ""))
    body = str(getattr(exc, "_body", ""))
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("Code"), str):
        return parsed["Code"], f"{parsed['Code']}: {parsed.get('Message', '')} (HTTP {status})"
    return None, f"HTTP {status}: {body[:200]}"
