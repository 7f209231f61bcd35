"""Buckets made to match a declaration, idempotently, aspect by aspect.

:meth:`BucketManager.ensure_bucket` reads each aspect (existence,
versioning, lifecycle, bucket policy, CORS, quota), compares it with what is
asked **by meaning**, and writes only what differs. Running it twice with the
same arguments makes no write call the second time, which is what lets
provisioning run on every deploy.

The declaration owns each aspect it manages: the bucket policy becomes
exactly the public-read statements asked for (none: no policy, the bucket is
private), the lifecycle exactly the rules asked for.

What this MinIO release (RELEASE.2025-09-07T16-13-09Z) does, measured:

- **CORS**: ``PutBucketCors`` and ``DeleteBucketCors`` answer 501
  NotImplemented; ``GetBucketCors`` always answers NoSuchCORSConfiguration.
  MinIO's CORS is server-wide instead: ``api cors_allow_origin`` (env
  ``MINIO_API_CORS_ALLOW_ORIGIN``, or ``mc admin config set ALIAS api
  cors_allow_origin=https://app.example.com``), default ``*``, which admits
  every origin for GET, PUT, POST, DELETE and HEAD with any header. The CORS
  aspect reports "unsupported" and a note says whether the server-wide
  setting admits the origins asked for.
- **Lifecycle**: expiration rules work. ``AbortIncompleteMultipartUpload`` is
  not implemented: a rule with only that action is refused as malformed, and
  next to an expiration it is silently dropped. MinIO removes incomplete
  uploads by itself after ``api stale_uploads_expiry`` (24h by default), so on
  MinIO those rules are not sent and the report says so.
- **Quota**: the admin API's bucket quota (hard limit) works.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from infra_lib.changes import Change
from infra_lib.errors import ConfigError, ProvisionError
from infra_lib.storage.config import S3Config, translate_errors
from infra_lib.storage.keys import check_bucket_name, check_prefix

if TYPE_CHECKING:
    import urllib3
    from minio import Minio, MinioAdmin

__all__ = [
    "BucketManager",
    "BucketReport",
    "Change",
    "CorsRule",
    "LifecycleRule",
    "canonical_policy",
    "public_read_policy",
    "same_policy",
]

_log = logging.getLogger(__name__)

_CORS_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "HEAD"})
# Versioning status of a bucket that does not exist (a real status is a str or None).
_MISSING = "<no such bucket>"


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleRule:
    """Expire objects under ``prefix`` and/or abort their incomplete uploads.

    ``prefix`` ``""`` means the whole bucket. ``expire_days``: delete
    objects that many days after creation. ``abort_incomplete_multipart_days``:
    abort multipart uploads left unfinished that long (not implemented by
    MinIO, see the module notes). ``rule_id`` defaults to one derived from the
    prefix; it is a label only and is ignored when comparing.
    """

    prefix: str = ""
    expire_days: int | None = None
    abort_incomplete_multipart_days: int | None = None
    rule_id: str | None = None

    def __post_init__(self) -> None:
        if self.prefix:
            check_prefix(self.prefix, what="lifecycle rule prefix")
        for name in ("expire_days", "abort_incomplete_multipart_days"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(
                    f"lifecycle rule {name} must be a whole number >= 1, not {value!r}"
                )
        if self.expire_days is None and self.abort_incomplete_multipart_days is None:
            raise ConfigError(
                f"lifecycle rule for prefix {self.prefix!r} does nothing: set expire_days "
                "and/or abort_incomplete_multipart_days"
            )
        if self.rule_id is not None and not 0 < len(self.rule_id) <= 255:
            raise ConfigError("lifecycle rule_id must be 1 to 255 characters")

    @property
    def id(self) -> str:
        """The rule's ID as sent to the server."""
        return self.rule_id or (f"prefix:{self.prefix}" if self.prefix else "whole-bucket")


@dataclass(frozen=True, slots=True, kw_only=True)
class CorsRule:
    """Which browser origins may call the bucket, with which methods and headers.

    For presigned uploads from a web app: ``allowed_origins=("https://app.example.com",)``,
    ``allowed_methods=("PUT", "POST", "GET")``. ``expose_headers`` lets the
    page read ``ETag`` (needed to finish multipart uploads).
    """

    allowed_origins: tuple[str, ...]
    allowed_methods: tuple[str, ...] = ("GET", "PUT", "POST")
    allowed_headers: tuple[str, ...] = ("*",)
    expose_headers: tuple[str, ...] = ("ETag",)
    max_age_seconds: int | None = 3000

    def __post_init__(self) -> None:
        if isinstance(self.allowed_origins, str) or not self.allowed_origins:
            raise ConfigError(
                "CORS rule allowed_origins must be a non-empty tuple of origins, e.g. "
                "('https://app.example.com',)"
            )
        bad = [m for m in self.allowed_methods if m not in _CORS_METHODS]
        if bad or not self.allowed_methods:
            raise ConfigError(
                f"CORS rule allowed_methods {self.allowed_methods!r} must be taken from "
                f"{', '.join(sorted(_CORS_METHODS))}"
            )
        if self.max_age_seconds is not None and self.max_age_seconds < 0:
            raise ConfigError(f"CORS max_age_seconds must be >= 0, not {self.max_age_seconds}")


@dataclass(frozen=True, slots=True)
class BucketReport:
    """What :meth:`BucketManager.ensure_bucket` did, aspect by aspect.

    ``aspects`` maps ``"bucket"``, ``"versioning"``, ``"lifecycle"``,
    ``"policy"`` and, when managed, ``"cors"``, ``"quota"`` and
    ``"abort_incomplete_multipart"`` to a :class:`Change`. ``notes`` explain
    every "unsupported".
    """

    bucket: str
    aspects: Mapping[str, Change]
    notes: tuple[str, ...] = field(default=())

    def __getitem__(self, aspect: str) -> Change:
        return self.aspects[aspect]

    @property
    def changed(self) -> bool:
        """True when anything was created or changed."""
        return any(c in (Change.CREATED, Change.CHANGED) for c in self.aspects.values())

    def __str__(self) -> str:
        parts = ", ".join(f"{name} {change.value}" for name, change in self.aspects.items())
        return f"bucket {self.bucket}: {parts}"


class BucketManager:
    """Creates and configures buckets on one server with admin credentials.

    ``http_client`` is an urllib3 pool to send requests through (default:
    :meth:`S3Config.pool_manager`); the admin API calls share it.
    """

    def __init__(self, config: S3Config, *, http_client: urllib3.PoolManager | None = None) -> None:
        self._config = config
        pool = http_client or config.pool_manager()
        self._client: Minio = config.client(http_client=pool)
        self._admin: MinioAdmin | None = (
            config.admin_client(http_client=pool) if config.minio_admin else None
        )
        self._boto: Any = None
        # A server that answered NotImplemented once is not asked to write again.
        self._cors_unsupported = False
        self._dry_run = False

    def _write(self, call: Any, *args: Any, **kwargs: Any) -> None:
        # Every change goes through here, so a dry run reads and diffs but never writes.
        if not self._dry_run:
            call(*args, **kwargs)

    @property
    def config(self) -> S3Config:
        """The config this manager talks to the server with."""
        return self._config

    def ensure_bucket(
        self,
        bucket: str,
        *,
        versioning: bool = False,
        lifecycle: Sequence[LifecycleRule] = (),
        cors: Sequence[CorsRule] | None = None,
        public_read_prefixes: Sequence[str] = (),
        quota_bytes: int | None = None,
        dry_run: bool = False,
    ) -> BucketReport:
        """Make ``bucket`` exist with exactly these settings; report what changed.

        With ``dry_run`` the server is read and diffed but nothing is written;
        the report says what would change.

        - ``versioning``: on, or off (a bucket that had it on is suspended;
          S3 cannot turn versioning fully off again).
        - ``lifecycle``: the complete set of rules; ``()`` removes any.
        - ``cors``: the complete set of rules; ``None`` leaves CORS alone.
        - ``public_read_prefixes``: prefixes (``"profiles/"``) whose objects
          anonymous clients may GET; nothing else becomes public, and listing
          stays private. ``()`` means no bucket policy at all.
        - ``quota_bytes``: a hard size limit (MinIO admin API); ``None``
          removes one that is set.
        """
        check_bucket_name(bucket)
        prefixes = tuple(check_prefix(p, what="public_read prefix") for p in public_read_prefixes)
        lifecycle = tuple(lifecycle)
        if quota_bytes is not None and (
            isinstance(quota_bytes, bool) or not isinstance(quota_bytes, int) or quota_bytes < 1
        ):
            raise ConfigError(
                f"quota_bytes must be a whole number >= 1 or None, not {quota_bytes!r}"
            )
        self._dry_run = dry_run
        try:
            return self._ensure(bucket, versioning, lifecycle, cors, prefixes, quota_bytes)
        finally:
            self._dry_run = False

    def _ensure(
        self,
        bucket: str,
        versioning: bool,
        lifecycle: tuple[LifecycleRule, ...],
        cors: Sequence[CorsRule] | None,
        prefixes: tuple[str, ...],
        quota_bytes: int | None,
    ) -> BucketReport:
        aspects: dict[str, Change] = {}
        notes: list[str] = []
        with translate_errors(self._config, "ensure the bucket exists", bucket=bucket):
            status = self._versioning_status(bucket)
            if status == _MISSING:
                self._write(self._client.make_bucket, bucket, location=self._config.region)
                aspects["bucket"] = Change.CREATED
                if self._dry_run:
                    # Nothing more can be read from a bucket that does not exist yet.
                    return BucketReport(bucket=bucket, aspects=aspects, notes=tuple(notes))
                status = None
            else:
                aspects["bucket"] = Change.UNCHANGED
        with translate_errors(self._config, "set versioning", bucket=bucket):
            aspects["versioning"] = self._ensure_versioning(bucket, versioning, status)
        with translate_errors(self._config, "set the lifecycle", bucket=bucket):
            aspects.update(self._ensure_lifecycle(bucket, lifecycle, notes))
        with translate_errors(self._config, "set the bucket policy", bucket=bucket):
            aspects["policy"] = self._ensure_policy(bucket, prefixes)
        if cors is not None:
            with translate_errors(self._config, "set CORS", bucket=bucket):
                aspects["cors"] = self._ensure_cors(bucket, tuple(cors), notes)
        quota = self._ensure_quota(bucket, quota_bytes, notes)
        if quota is not None:
            aspects["quota"] = quota

        report = BucketReport(bucket=bucket, aspects=aspects, notes=tuple(notes))
        _log.info("%s", report)
        return report

    def delete_bucket(self, bucket: str, *, force: bool = False) -> bool:
        """Delete ``bucket``; true if it existed.

        Without ``force`` a bucket that still holds objects is a
        ProvisionError; with it every object (and every version) is removed
        first.
        """
        check_bucket_name(bucket)
        with translate_errors(self._config, "delete the bucket", bucket=bucket):
            if self._versioning_status(bucket) == _MISSING:
                return False
            if force:
                from minio.deleteobjects import DeleteObject

                doomed = (
                    DeleteObject(o.object_name, o.version_id)
                    for o in self._client.list_objects(bucket, recursive=True, include_version=True)
                    if o.object_name is not None
                )
                failures = list(self._client.remove_objects(bucket, doomed))
                if failures:
                    raise ProvisionError(
                        f"could not empty bucket {bucket!r} at {self._config.endpoint}: "
                        f"{failures[0].code}: {failures[0].message} ({len(failures)} objects)"
                    )
            self._client.remove_bucket(bucket)
        _log.info("bucket %s deleted", bucket)
        return True

    # --- aspects -----------------------------------------------------------

    def _versioning_status(self, bucket: str) -> str | None:
        """The bucket's versioning status, or ``_MISSING`` when there is no such bucket.

        Doubles as the existence check because it is a GET: an error comes
        with a body naming its cause. A HEAD (``bucket_exists``) gets a bare
        403 for wrong credentials, indistinguishable from "not allowed".
        """
        from minio.error import S3Error

        try:
            status: str | None = self._client.get_bucket_versioning(bucket).status
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                return _MISSING
            raise
        return status

    def _ensure_versioning(self, bucket: str, wanted: bool, status: str | None) -> Change:
        from minio.commonconfig import ENABLED
        from minio.versioningconfig import SUSPENDED, VersioningConfig

        if wanted:
            if status == ENABLED:
                return Change.UNCHANGED
            self._write(self._client.set_bucket_versioning, bucket, VersioningConfig(ENABLED))
            return Change.CREATED if status in (None, "Off") else Change.CHANGED
        if status == ENABLED:
            self._write(self._client.set_bucket_versioning, bucket, VersioningConfig(SUSPENDED))
            return Change.CHANGED
        return Change.UNCHANGED

    def _ensure_lifecycle(
        self, bucket: str, rules: tuple[LifecycleRule, ...], notes: list[str]
    ) -> dict[str, Change]:
        aspects: dict[str, Change] = {}
        if self._config.minio_admin and any(r.abort_incomplete_multipart_days for r in rules):
            aspects["abort_incomplete_multipart"] = Change.UNSUPPORTED
            notes.append(
                "MinIO's lifecycle does not implement AbortIncompleteMultipartUpload; it "
                f"removes incomplete uploads itself after {self._stale_upload_expiry()} "
                "(api stale_uploads_expiry). Those rule parts were not sent."
            )
            rules = tuple(
                LifecycleRule(prefix=r.prefix, expire_days=r.expire_days, rule_id=r.rule_id)
                for r in rules
                if r.expire_days is not None
            )
        current = self._client.get_bucket_lifecycle(bucket)
        have = _canonical_lifecycle(current.rules if current is not None else [])
        want = frozenset(
            (r.prefix, r.expire_days, r.abort_incomplete_multipart_days) for r in rules
        )
        if have == want:
            aspects["lifecycle"] = Change.UNCHANGED
        elif not rules:
            self._write(self._client.delete_bucket_lifecycle, bucket)
            aspects["lifecycle"] = Change.CHANGED
        else:
            self._write(self._client.set_bucket_lifecycle, bucket, _lifecycle_config(rules))
            aspects["lifecycle"] = Change.CHANGED if have else Change.CREATED
        return aspects

    def _ensure_policy(self, bucket: str, prefixes: tuple[str, ...]) -> Change:
        from minio.error import S3Error

        try:
            current: str | None = self._client.get_bucket_policy(bucket)
        except S3Error as exc:
            if exc.code != "NoSuchBucketPolicy":
                raise
            current = None
        if not prefixes:
            if current is None:
                return Change.UNCHANGED
            self._write(self._client.delete_bucket_policy, bucket)
            return Change.CHANGED
        wanted = public_read_policy(bucket, prefixes)
        if current is not None and same_policy(current, wanted):
            return Change.UNCHANGED
        self._write(self._client.set_bucket_policy, bucket, json.dumps(wanted))
        return Change.CREATED if current is None else Change.CHANGED

    def _ensure_cors(self, bucket: str, rules: tuple[CorsRule, ...], notes: list[str]) -> Change:
        if self._cors_unsupported:
            notes.append(self._cors_note(rules))
            return Change.UNSUPPORTED
        import botocore.exceptions  # type: ignore[import-untyped]

        from infra_lib.storage.presign import boto3_client

        if self._boto is None:
            self._boto = boto3_client(self._config, public=False)
        try:
            try:
                response = self._boto.get_bucket_cors(Bucket=bucket)
                have = _canonical_cors(response.get("CORSRules", []))
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchCORSConfiguration":
                    raise
                have = None
            want = _canonical_cors([_cors_to_boto(r) for r in rules]) if rules else None
            if have == want:
                return Change.UNCHANGED
            if want is None:
                self._write(self._boto.delete_bucket_cors, Bucket=bucket)
                return Change.CHANGED
            self._write(
                self._boto.put_bucket_cors,
                Bucket=bucket,
                CORSConfiguration={"CORSRules": [_cors_to_boto(r) for r in rules]},
            )
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NotImplemented":
                raise
            self._cors_unsupported = True
            notes.append(self._cors_note(rules))
            return Change.UNSUPPORTED
        return Change.CREATED if have is None else Change.CHANGED

    def _cors_note(self, rules: tuple[CorsRule, ...]) -> str:
        note = (
            f"the server at {self._config.endpoint} does not implement per-bucket CORS "
            "(PutBucketCors: NotImplemented)."
        )
        if self._admin is None:
            return note
        allowed = self._server_cors_origins()
        if allowed is None:
            return note + " MinIO's CORS is server-wide: `api cors_allow_origin`."
        import fnmatch

        wanted = sorted({o for r in rules for o in r.allowed_origins})
        missing = [o for o in wanted if not any(fnmatch.fnmatchcase(o, a) for a in allowed)]
        setting = ",".join(allowed)
        if not missing:
            return note + (
                f" MinIO's server-wide `api cors_allow_origin={setting}` already admits "
                f"{', '.join(wanted) or 'them'}."
            )
        return note + (
            f" MinIO's server-wide `api cors_allow_origin={setting}` does not admit "
            f"{', '.join(missing)}; set MINIO_API_CORS_ALLOW_ORIGIN (or `mc admin config set "
            "ALIAS api cors_allow_origin=...`) on the server."
        )

    def _server_api_config(self) -> dict[str, str]:
        from minio.error import MinioAdminException

        if self._admin is None:
            return {}
        try:
            text = self._admin.config_get("api")
        except MinioAdminException:
            _log.debug("cannot read MinIO's api config", exc_info=True)
            return {}
        values: dict[str, str] = {}
        for token in shlex.split(text):
            name, sep, value = token.partition("=")
            if sep:
                values[name] = value
        return values

    def _server_cors_origins(self) -> list[str] | None:
        value = self._server_api_config().get("cors_allow_origin")
        return None if value is None else [o for o in value.split(",") if o]

    def _stale_upload_expiry(self) -> str:
        return self._server_api_config().get("stale_uploads_expiry", "24h (the default)")

    def _ensure_quota(
        self, bucket: str, quota_bytes: int | None, notes: list[str]
    ) -> Change | None:
        if self._admin is None:
            if quota_bytes is None:
                return None
            notes.append(
                f"bucket quotas are a MinIO admin feature; the server at {self._config.endpoint} "
                "is not configured as MinIO (minio_admin=False), so no quota was set."
            )
            return Change.UNSUPPORTED
        with translate_errors(self._config, "set the bucket quota", bucket=bucket):
            raw = self._admin.bucket_quota_get(bucket)
            try:
                have = int(json.loads(raw).get("quota") or 0)
            except (ValueError, AttributeError, TypeError) as exc:
                raise ProvisionError(
                    f"MinIO at {self._config.endpoint} answered the quota of bucket {bucket!r} "
                    f"with something unexpected: {raw[:200]!r}"
                ) from exc
            want = quota_bytes or 0
            if have == want:
                return Change.UNCHANGED
            if want:
                self._write(self._admin.bucket_quota_set, bucket, want)
            else:
                self._write(self._admin.bucket_quota_clear, bucket)
        return Change.CREATED if not have else Change.CHANGED


# --- bucket policies ---------------------------------------------------------


def public_read_policy(bucket: str, prefixes: Sequence[str]) -> dict[str, Any]:
    """A bucket policy letting anyone GET objects under ``prefixes``, nothing else.

    One statement per prefix, so that each can be read, removed or audited
    on its own. Listing is not granted: anonymous clients must know a key.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": f"PublicRead{index}",
                "Effect": "Allow",
                "Principal": {"AWS": ["*"]},
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/{prefix}*"],
            }
            for index, prefix in enumerate(prefixes)
        ],
    }


_Canonical: TypeAlias = Any


def canonical_policy(document: str | Mapping[str, Any]) -> _Canonical:
    """A hashable form of an IAM / bucket policy that is equal for equal meanings.

    Normalised: a single statement or a list of them, a string or a list for
    ``Action`` / ``Resource`` / principals / condition values, the order of
    statements and of list items, duplicates, ``"*"`` versus ``{"AWS": "*"}``
    principals, the case of actions and condition keys, and ``Sid`` (a label).
    ``Version`` counts only when a policy variable (``${...}``) appears, the
    one thing it changes. Raises ConfigError for a document that is not a
    policy.
    """
    try:
        data = json.loads(document) if isinstance(document, str | bytes) else document
    except ValueError as exc:
        raise ConfigError(f"a policy document is not valid JSON: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError("a policy document must be a JSON object")
    statements = data.get("Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    if not isinstance(statements, list):
        raise ConfigError("a policy's Statement must be an object or a list")
    canonical = frozenset(_canonical_statement(s) for s in statements)
    version = data.get("Version", "2008-10-17")
    uses_variables = "${" in json.dumps(statements)
    return (version if uses_variables else None, canonical)


def same_policy(a: str | Mapping[str, Any], b: str | Mapping[str, Any]) -> bool:
    """True when two policy documents mean the same (see :func:`canonical_policy`)."""
    return bool(canonical_policy(a) == canonical_policy(b))


def _strings(value: Any, *, lower: bool = False) -> frozenset[str]:
    items = value if isinstance(value, list | tuple) else [value]
    out = set()
    for item in items:
        # JSON true and "true" mean the same to a condition.
        text = ("true" if item else "false") if isinstance(item, bool) else str(item)
        out.add(text.lower() if lower else text)
    return frozenset(out)


def _principal(value: Any) -> _Canonical:
    if value == "*":
        value = {"AWS": "*"}
    if not isinstance(value, Mapping):
        raise ConfigError(f"a policy Principal must be '*' or an object, not {value!r}")
    return frozenset((kind, _strings(ids)) for kind, ids in value.items())


def _canonical_statement(statement: Any) -> _Canonical:
    if not isinstance(statement, Mapping):
        raise ConfigError("a policy statement must be a JSON object")
    parts: list[tuple[str, Any]] = []
    for name, value in statement.items():
        if name == "Sid":
            continue
        if name in ("Action", "NotAction"):
            # IAM matches action names case-insensitively.
            parts.append((name, _strings(value, lower=True)))
        elif name in ("Resource", "NotResource"):
            parts.append((name, _strings(value)))
        elif name in ("Principal", "NotPrincipal"):
            parts.append((name, _principal(value)))
        elif name == "Condition":
            if not isinstance(value, Mapping):
                raise ConfigError("a policy Condition must be an object")
            parts.append(
                (
                    name,
                    frozenset(
                        (operator, frozenset((k.lower(), _strings(v)) for k, v in body.items()))
                        for operator, body in value.items()
                        if isinstance(body, Mapping)
                    ),
                )
            )
        else:
            parts.append((name, json.dumps(value, sort_keys=True)))
    return frozenset(parts)


# --- lifecycle -----------------------------------------------------------------


def _canonical_lifecycle(rules: Sequence[Any]) -> frozenset[tuple[Any, ...]]:
    """Rules as (prefix, expire days, abort days), or an unmatched marker for others."""
    out: set[tuple[Any, ...]] = set()
    for rule in rules:
        prefix = rule.rule_filter.prefix if rule.rule_filter is not None else None
        plain = (
            rule.status == "Enabled"
            and rule.rule_filter is not None
            and rule.rule_filter.and_operator is None
            and rule.rule_filter.tag is None
            and rule.transition is None
            and rule.noncurrent_version_expiration is None
            and rule.noncurrent_version_transition is None
            and (rule.expiration is None or rule.expiration.date is None)
        )
        if not plain:
            # A rule this module cannot express never equals a wanted one.
            out.add(("other", rule.rule_id))
            continue
        days = rule.expiration.days if rule.expiration is not None else None
        abort = (
            rule.abort_incomplete_multipart_upload.days_after_initiation
            if rule.abort_incomplete_multipart_upload is not None
            else None
        )
        out.add((prefix or "", days, abort))
    return frozenset(out)


def _lifecycle_config(rules: Sequence[LifecycleRule]) -> Any:
    from minio.commonconfig import ENABLED, Filter
    from minio.lifecycleconfig import (
        AbortIncompleteMultipartUpload,
        Expiration,
        LifecycleConfig,
        Rule,
    )

    return LifecycleConfig(
        [
            Rule(
                ENABLED,
                rule_filter=Filter(prefix=r.prefix),
                rule_id=r.id,
                expiration=Expiration(days=r.expire_days) if r.expire_days else None,
                abort_incomplete_multipart_upload=(
                    AbortIncompleteMultipartUpload(r.abort_incomplete_multipart_days)
                    if r.abort_incomplete_multipart_days
                    else None
                ),
            )
            for r in rules
        ]
    )


# --- CORS ----------------------------------------------------------------------


def _cors_to_boto(rule: CorsRule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "AllowedOrigins": list(rule.allowed_origins),
        "AllowedMethods": list(rule.allowed_methods),
        "AllowedHeaders": list(rule.allowed_headers),
        "ExposeHeaders": list(rule.expose_headers),
    }
    if rule.max_age_seconds is not None:
        out["MaxAgeSeconds"] = rule.max_age_seconds
    return out


def _canonical_cors(rules: Sequence[Mapping[str, Any]]) -> frozenset[Any] | None:
    if not rules:
        return None
    return frozenset(
        (
            frozenset(r.get("AllowedOrigins", ())),
            frozenset(m.upper() for m in r.get("AllowedMethods", ())),
            frozenset(h.lower() for h in r.get("AllowedHeaders", ())),
            frozenset(h.lower() for h in r.get("ExposeHeaders", ())),
            r.get("MaxAgeSeconds"),
        )
        for r in rules
    )
