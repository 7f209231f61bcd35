"""Signature V4 query signing for presigned PUTs that pin their headers.

The minio SDK presigns with ``X-Amz-SignedHeaders=host`` only, so its PUT
URLs accept any ``Content-Type``. Signing the type as well makes the server
refuse (403 SignatureDoesNotMatch) an upload sent with another one. This is
the AWS algorithm, query-string form, for S3 (``UNSIGNED-PAYLOAD``), on the
standard library alone so the minio backend does not need botocore.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote, urlsplit

__all__ = ["QuerySigner"]

_ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


class QuerySigner:
    """Presigns S3 URLs whose signature covers ``host`` and the given headers.

    Built once per credentials; the derived signing key is kept for the
    current day, so each URL costs two SHA-256 hashes and one HMAC.
    """

    __slots__ = ("_access_key", "_addressing", "_day_key", "_netloc", "_region", "_scheme",
                 "_secret_key")  # fmt: skip

    def __init__(
        self,
        *,
        endpoint: str,
        access_key: str,
        secret_key: str,
        region: str,
        addressing: Literal["path", "virtual"],
    ) -> None:
        url = urlsplit(endpoint)
        self._scheme = url.scheme
        self._netloc = url.netloc
        self._access_key = access_key
        self._secret_key = secret_key
        self._region = region
        self._addressing = addressing
        self._day_key: tuple[str, bytes] | None = None

    def url(
        self,
        method: str,
        bucket: str,
        key: str,
        *,
        expires: int,
        headers: Mapping[str, str],
        now: datetime | None = None,
    ) -> str:
        """A URL for ``method`` on ``bucket/key``, valid ``expires`` seconds.

        The client must send each of ``headers`` with exactly this value.
        ``bucket`` and ``key`` are expected to be checked already; an empty
        ``bucket`` signs the service's root (``GET /`` lists the buckets).
        """
        when = (now or datetime.now(UTC)).astimezone(UTC)
        stamp = when.strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        if not bucket:
            # The service itself, not a bucket: ListBuckets is GET /.
            host, path = self._netloc, "/"
        elif self._addressing == "virtual":
            host, path = f"{bucket}.{self._netloc}", "/" + quote(key, safe="/~")
        else:
            host, path = self._netloc, f"/{bucket}/" + quote(key, safe="/~")
        signed = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
        signed["host"] = host
        names = sorted(signed)
        signed_names = ";".join(names)
        scope = f"{day}/{self._region}/s3/aws4_request"
        query = {
            "X-Amz-Algorithm": _ALGORITHM,
            "X-Amz-Credential": f"{self._access_key}/{scope}",
            "X-Amz-Date": stamp,
            "X-Amz-Expires": str(expires),
            "X-Amz-SignedHeaders": signed_names,
        }
        canonical_query = "&".join(
            f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(query.items())
        )
        canonical = "\n".join(
            (
                method,
                path,
                canonical_query,
                "".join(f"{name}:{signed[name]}\n" for name in names),
                signed_names,
                "UNSIGNED-PAYLOAD",
            )
        )
        to_sign = "\n".join(
            (_ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest())
        )
        signature = hmac.new(
            self._signing_key(day), to_sign.encode("utf-8"), hashlib.sha256
        ).hexdigest()
        return f"{self._scheme}://{host}{path}?{canonical_query}&X-Amz-Signature={signature}"

    def _signing_key(self, day: str) -> bytes:
        if self._day_key is None or self._day_key[0] != day:
            key = _hmac(("AWS4" + self._secret_key).encode("utf-8"), day)
            for part in (self._region, "s3", "aws4_request"):
                key = _hmac(key, part)
            self._day_key = (day, key)
        return self._day_key[1]
