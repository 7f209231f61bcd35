"""One MinIO user per service, allowed into its own key prefixes only.

The shared bucket holds every service's objects (``profiles/``, ``boards/``,
``storage/``, ``video/``); with the root credentials any service could read or
overwrite any other's. :func:`ensure_service_user` gives a service a user
of its own whose policy admits object reads and writes under its prefixes,
listing only with a ``prefix`` inside them, and nothing in other buckets.

Users and policies are a MinIO feature (its admin API). Against AWS S3 or
another server, give each service IAM credentials by other means (an IAM
user or role with the policy from :func:`service_policy`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infra_lib.errors import ConfigError, ProvisionError
from infra_lib.names import validate_service_name
from infra_lib.storage.buckets import Change, same_policy
from infra_lib.storage.config import S3Config, translate_errors
from infra_lib.storage.keys import check_bucket_name, check_prefix

if TYPE_CHECKING:
    import urllib3
    from minio import MinioAdmin

__all__ = [
    "OBJECT_ACTIONS",
    "ServiceCredentials",
    "delete_service_user",
    "ensure_service_user",
    "service_access_key",
    "service_policy",
]

_log = logging.getLogger(__name__)

#: What a service may do to objects under its prefixes.
OBJECT_ACTIONS: tuple[str, ...] = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)

# MinIO's limits for a user's secret key.
_SECRET_MIN, _SECRET_MAX = 8, 40


@dataclass(frozen=True, slots=True)
class ServiceCredentials:
    """A service's own access key and secret; ``secret_key`` is left out of ``repr``.

    ``change`` says what :func:`ensure_service_user` did: created the user,
    changed its secret, policy or status, or found it as asked.
    """

    access_key: str
    secret_key: str = field(repr=False)
    change: Change = Change.UNCHANGED


def service_access_key(service: str) -> str:
    """The access key (and policy name) of ``service``'s user: ``svc-<service>``."""
    return f"svc-{validate_service_name(service)}"


def service_policy(bucket: str, prefixes: Sequence[str]) -> dict[str, Any]:
    """The IAM policy confining a user to ``prefixes`` of ``bucket``.

    Objects: :data:`OBJECT_ACTIONS` on ``bucket/prefix*``. Listing:
    ``s3:ListBucket`` only when the request's ``prefix`` lies inside one of
    them, so a service cannot enumerate other services' keys. Bucket
    location: allowed, because several SDKs (minio-go, the AWS SDKs in some
    configurations) look it up before their first request.
    """
    check_bucket_name(bucket)
    prefixes = _check_prefixes(prefixes)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ObjectsUnderOwnPrefixes",
                "Effect": "Allow",
                "Action": list(OBJECT_ACTIONS),
                "Resource": [f"arn:aws:s3:::{bucket}/{prefix}*" for prefix in prefixes],
            },
            {
                "Sid": "ListOwnPrefixes",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
            },
            {
                "Sid": "BucketLocation",
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
        ],
    }


def ensure_service_user(
    config: S3Config,
    service: str,
    *,
    bucket: str,
    prefixes: Sequence[str],
    secret_key: str,
    http_client: urllib3.PoolManager | None = None,
    dry_run: bool = False,
) -> ServiceCredentials:
    """Make ``svc-<service>`` a MinIO user with this secret, confined to ``prefixes``.

    Idempotent: the policy is compared by meaning with what the server holds
    and written only when it differs; the secret is checked by signing one
    request with it (MinIO never shows a secret back) and set only when that
    fails; the user is enabled and given exactly this one policy. Nothing is
    written when everything already matches.

    ``config`` holds MinIO admin (root) credentials. The secret never
    appears in a log line or an error message.
    """
    access_key = service_access_key(service)
    check_bucket_name(bucket)
    prefixes = _check_prefixes(prefixes)
    if not isinstance(secret_key, str) or not _SECRET_MIN <= len(secret_key) <= _SECRET_MAX:
        raise ConfigError(
            f"the secret key of MinIO user {access_key!r} must be {_SECRET_MIN} to "
            f"{_SECRET_MAX} characters (MinIO's limits)."
        )
    admin = _admin(config, service, http_client)
    wanted = service_policy(bucket, prefixes)

    def write(call: Any, *args: Any, **kwargs: Any) -> None:
        # With dry_run the user and policy are read and compared, never written.
        if not dry_run:
            call(*args, **kwargs)

    changes: list[Change] = []

    with translate_errors(
        config, f"provision MinIO user {access_key!r}", bucket=bucket, secrets=[secret_key]
    ):
        current_policy = _admin_get(admin.policy_info, access_key, "XMinioAdminNoSuchPolicy")
        if current_policy is None or not same_policy(current_policy, wanted):
            write(admin.policy_add, access_key, policy=wanted)
            changes.append(Change.CHANGED)

        raw_user = _admin_get(admin.user_info, access_key, "XMinioAdminNoSuchUser")
        if raw_user is None:
            write(admin.user_add, access_key, secret_key)
            info: dict[str, Any] = {}
            created = True
        else:
            info = _json_object(raw_user, f"user {access_key!r}")
            created = False
        if not created and info.get("status") != "enabled":
            write(admin.user_enable, access_key)
            changes.append(Change.CHANGED)
        attached = {p for p in str(info.get("policyName") or "").split(",") if p}
        if attached != {access_key}:
            write(admin.policy_set, access_key, user=access_key)
            changes.append(Change.CHANGED)

    if not created and not _secret_works(
        config, access_key, secret_key, bucket, prefixes[0], http_client
    ):
        with translate_errors(
            config, f"set the secret of MinIO user {access_key!r}", secrets=[secret_key]
        ):
            write(admin.user_add, access_key, secret_key)
        changes.append(Change.CHANGED)

    change = Change.CREATED if created else (Change.CHANGED if changes else Change.UNCHANGED)
    if change is not Change.UNCHANGED:
        _log.info("MinIO user %s %s", access_key, change.value)
    return ServiceCredentials(access_key=access_key, secret_key=secret_key, change=change)


def delete_service_user(
    config: S3Config, service: str, *, http_client: urllib3.PoolManager | None = None
) -> bool:
    """Delete ``svc-<service>`` and its policy; true if the user existed."""
    access_key = service_access_key(service)
    admin = _admin(config, service, http_client)
    with translate_errors(config, f"delete MinIO user {access_key!r}"):
        existed = _admin_get(admin.user_info, access_key, "XMinioAdminNoSuchUser") is not None
        if existed:
            admin.user_remove(access_key)
        if _admin_get(admin.policy_info, access_key, "XMinioAdminNoSuchPolicy") is not None:
            admin.policy_remove(access_key)
    if existed:
        _log.info("MinIO user %s deleted", access_key)
    return existed


def _admin(config: S3Config, service: str, http_client: urllib3.PoolManager | None) -> MinioAdmin:
    if not config.minio_admin:
        raise ProvisionError(
            f"cannot create a user for service {service!r}: per-service users are a MinIO "
            f"feature and the server at {config.endpoint} is not configured as MinIO "
            "(minio_admin=False). Give the service IAM credentials by other means, e.g. an "
            "IAM user or role with the policy from infra_lib.storage.service_policy()."
        )
    return config.admin_client(http_client=http_client)


def _check_prefixes(prefixes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(prefixes, str) or not prefixes:
        raise ConfigError(
            "a service user needs a non-empty sequence of key prefixes, e.g. ('boards/',)"
        )
    return tuple(check_prefix(p, what="service prefix") for p in prefixes)


def _admin_get(call: Any, name: str, missing_code: str) -> str | None:
    """``call(name)``, or None when the admin API says the thing does not exist."""
    from minio.error import MinioAdminException

    try:
        return str(call(name))
    except MinioAdminException as exc:
        try:
            code = json.loads(str(getattr(exc, "_body", ""))).get("Code")
        except (ValueError, AttributeError):
            code = None
        if code == missing_code:
            return None
        raise


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ProvisionError(
            f"MinIO answered the admin query for {what} with non-JSON: {text[:200]!r}"
        )
    return value


def _secret_works(
    config: S3Config,
    access_key: str,
    secret_key: str,
    bucket: str,
    prefix: str,
    http_client: urllib3.PoolManager | None,
) -> bool:
    """Whether MinIO accepts a request signed with this key pair.

    A listing inside the service's own prefix: the one read its policy
    surely allows. Any answer other than a signature or unknown-key error
    (even AccessDenied or NoSuchBucket) proves the secret is right.
    """
    from minio.error import S3Error

    probe = dataclasses.replace(
        config, access_key=access_key, secret_key=secret_key, minio_admin=False
    ).client(http_client=http_client)
    with translate_errors(
        config,
        f"check the secret of MinIO user {access_key!r}",
        bucket=bucket,
        access_key=access_key,
        secrets=[secret_key],
    ):
        try:
            next(iter(probe.list_objects(bucket, prefix=prefix)), None)
        except S3Error as exc:
            if exc.code in ("SignatureDoesNotMatch", "InvalidAccessKeyId"):
                return False
            if exc.code in ("AccessDenied", "NoSuchBucket"):
                return True
            raise
    return True
