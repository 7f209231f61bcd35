"""Object storage (MinIO / S3): config, key layout, presigning, buckets, service users.

- :class:`S3Config` (``config.py``): endpoints, credentials, TLS; builds SDK clients.
- ``keys.py``: the reference key layout (``avatar_key``, ``storage_key``, ...) and
  :func:`validate_key`, which keeps client-supplied keys inside a service's prefixes.
- :class:`Presigner` (``presign.py``): presigned GET/PUT URLs and POST policies,
  signed for the public endpoint, with the minio SDK or botocore.
- :class:`BucketManager` (``buckets.py``): idempotent buckets (versioning,
  lifecycle, public-read prefixes, CORS, quota), reported aspect by aspect.
- :func:`ensure_service_user` (``credentials.py``): a MinIO user per service,
  confined to its prefixes.

Names are loaded on first use: ``from infra_lib.storage import avatar_key``
or ``S3Config`` imports neither minio nor boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra_lib._lazy import lazy_exports

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "MAX_PRESIGN_EXPIRY": "infra_lib.storage.config",
    "S3Config": "infra_lib.storage.config",
    "check_expiry": "infra_lib.storage.config",
    "translate_errors": "infra_lib.storage.config",
    "MAX_KEY_BYTES": "infra_lib.storage.keys",
    "MAX_SEGMENT_BYTES": "infra_lib.storage.keys",
    "avatar_key": "infra_lib.storage.keys",
    "board_attachment_key": "infra_lib.storage.keys",
    "board_attachments_prefix": "infra_lib.storage.keys",
    "check_bucket_name": "infra_lib.storage.keys",
    "check_key": "infra_lib.storage.keys",
    "check_prefix": "infra_lib.storage.keys",
    "check_segment": "infra_lib.storage.keys",
    "storage_key": "infra_lib.storage.keys",
    "validate_key": "infra_lib.storage.keys",
    "video_prefix": "infra_lib.storage.keys",
    "MAX_POST_SIZE": "infra_lib.storage.presign",
    "PresignedPost": "infra_lib.storage.presign",
    "Presigner": "infra_lib.storage.presign",
    "boto3_client": "infra_lib.storage.presign",
    "check_content_type": "infra_lib.storage.presign",
    "BucketManager": "infra_lib.storage.buckets",
    "BucketReport": "infra_lib.storage.buckets",
    "Change": "infra_lib.storage.buckets",
    "CorsRule": "infra_lib.storage.buckets",
    "LifecycleRule": "infra_lib.storage.buckets",
    "canonical_policy": "infra_lib.storage.buckets",
    "public_read_policy": "infra_lib.storage.buckets",
    "same_policy": "infra_lib.storage.buckets",
    "OBJECT_ACTIONS": "infra_lib.storage.credentials",
    "ServiceCredentials": "infra_lib.storage.credentials",
    "delete_service_user": "infra_lib.storage.credentials",
    "ensure_service_user": "infra_lib.storage.credentials",
    "service_access_key": "infra_lib.storage.credentials",
    "service_policy": "infra_lib.storage.credentials",
}

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_POST_SIZE",
    "MAX_PRESIGN_EXPIRY",
    "MAX_SEGMENT_BYTES",
    "OBJECT_ACTIONS",
    "BucketManager",
    "BucketReport",
    "Change",
    "CorsRule",
    "LifecycleRule",
    "PresignedPost",
    "Presigner",
    "S3Config",
    "ServiceCredentials",
    "avatar_key",
    "board_attachment_key",
    "board_attachments_prefix",
    "boto3_client",
    "canonical_policy",
    "check_bucket_name",
    "check_content_type",
    "check_expiry",
    "check_key",
    "check_prefix",
    "check_segment",
    "delete_service_user",
    "ensure_service_user",
    "public_read_policy",
    "same_policy",
    "service_access_key",
    "service_policy",
    "storage_key",
    "translate_errors",
    "validate_key",
    "video_prefix",
]

if TYPE_CHECKING:
    from infra_lib.storage.buckets import (
        BucketManager,
        BucketReport,
        Change,
        CorsRule,
        LifecycleRule,
        canonical_policy,
        public_read_policy,
        same_policy,
    )
    from infra_lib.storage.config import (
        MAX_PRESIGN_EXPIRY,
        S3Config,
        check_expiry,
        translate_errors,
    )
    from infra_lib.storage.credentials import (
        OBJECT_ACTIONS,
        ServiceCredentials,
        delete_service_user,
        ensure_service_user,
        service_access_key,
        service_policy,
    )
    from infra_lib.storage.keys import (
        MAX_KEY_BYTES,
        MAX_SEGMENT_BYTES,
        avatar_key,
        board_attachment_key,
        board_attachments_prefix,
        check_bucket_name,
        check_key,
        check_prefix,
        check_segment,
        storage_key,
        validate_key,
        video_prefix,
    )
    from infra_lib.storage.presign import (
        MAX_POST_SIZE,
        PresignedPost,
        Presigner,
        boto3_client,
        check_content_type,
    )


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
