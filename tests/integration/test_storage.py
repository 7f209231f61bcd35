"""Object storage against the stack's real MinIO: presigned flows, buckets, service users.

Uploads and downloads that a browser would make go through urllib with no
SDK, so what is tested is what the server accepts from a plain HTTP client.
Every bucket is named ``test-<uuid8>-...`` and every user ``svc-t<uuid8>-...``;
both are deleted afterwards, so the real bucket and users are never touched.
"""

from __future__ import annotations

import dataclasses
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import urllib3
from minio import Minio
from minio.error import S3Error

from infra_lib.errors import InvalidObjectKey, ProvisionError, ServiceUnavailable
from infra_lib.stack.settings import StackSettings
from infra_lib.storage import (
    BucketManager,
    Change,
    CorsRule,
    LifecycleRule,
    Presigner,
    S3Config,
    ServiceCredentials,
    delete_service_user,
    ensure_service_user,
)

from .conftest import free_port

pytestmark = pytest.mark.integration

MINUTE = timedelta(minutes=1)


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(settings: StackSettings) -> S3Config:
    return S3Config.from_stack(settings)


@pytest.fixture(scope="module")
def manager(s3: S3Config) -> BucketManager:
    return BucketManager(s3)


class Buckets:
    """Unique bucket names for one test, emptied and deleted afterwards."""

    def __init__(self, manager: BucketManager) -> None:
        self.manager = manager
        self.tag = uuid.uuid4().hex[:8]
        self.made: list[str] = []

    def name(self, label: str) -> str:
        name = f"test-{self.tag}-{label}"
        self.made.append(name)
        return name

    def create(self, label: str, **settings: Any) -> str:
        name = self.name(label)
        self.manager.ensure_bucket(name, **settings)
        return name


@pytest.fixture
def buckets(manager: BucketManager) -> Iterator[Buckets]:
    made = Buckets(manager)
    yield made
    for name in made.made:
        manager.delete_bucket(name, force=True)


@pytest.fixture
def bucket(buckets: Buckets) -> str:
    return buckets.create("files")


class Services:
    """Unique service names for one test; their MinIO users and policies are deleted afterwards."""

    def __init__(self, config: S3Config) -> None:
        self.config = config
        self.tag = uuid.uuid4().hex[:8]
        self.made: list[str] = []

    def ensure(
        self, label: str, *, bucket: str, prefixes: list[str], secret: str | None = None
    ) -> ServiceCredentials:
        service = f"t{self.tag}-{label}"
        if service not in self.made:
            self.made.append(service)
        return ensure_service_user(
            self.config,
            service,
            bucket=bucket,
            prefixes=prefixes,
            secret_key=secret or f"secret-{label}-{self.tag}",
        )


@pytest.fixture
def services(s3: S3Config) -> Iterator[Services]:
    made = Services(s3)
    yield made
    for service in made.made:
        delete_service_user(s3, service)


class RecordingPool(urllib3.PoolManager):
    """A real connection pool that also notes each request's method and path."""

    def __init__(self) -> None:
        super().__init__(
            timeout=urllib3.Timeout(connect=5, read=30), retries=urllib3.Retry(total=2)
        )
        self.requests: list[tuple[str, str]] = []

    def urlopen(  # type: ignore[override]
        self, method: str, url: str, redirect: bool = True, **kw: Any
    ) -> Any:
        self.requests.append((method, url))
        return super().urlopen(method, url, redirect=redirect, **kw)

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [(m, u) for m, u in self.requests if m not in ("GET", "HEAD")]


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with urllib: status, headers, body; no SDK, no signing."""
    assert url.startswith(("http://", "https://"))
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def form_data(
    fields: dict[str, str], filename: str, data: bytes, content_type: str
) -> tuple[bytes, str]:
    """A multipart/form-data body as a browser builds it: fields first, the file last."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def service_client(s3: S3Config, credentials: ServiceCredentials) -> Minio:
    return dataclasses.replace(
        s3,
        access_key=credentials.access_key,
        secret_key=credentials.secret_key,
        minio_admin=False,
    ).client()


def s3_code(action: Any) -> str | None:
    """The S3 error code ``action()`` fails with, or None when it succeeds."""
    try:
        result = action()
        if hasattr(result, "__next__"):
            list(result)
    except S3Error as exc:
        return exc.code
    return None


# --- presigned flows ----------------------------------------------------------------------


def test_reference_presigned_flow_with_a_plain_http_client(s3: S3Config, bucket: str) -> None:
    presigner = Presigner(s3)
    key = "profiles/42/avatar.jpg"
    body = b"\xff\xd8\xff\xe0 not really a jpeg " + uuid.uuid4().bytes

    put = presigner.put_url(bucket, key, content_type="image/jpeg", expires=timedelta(minutes=5))
    status, _, answer = http("PUT", put, body, {"Content-Type": "image/jpeg"})
    assert status == 200, answer

    get = presigner.get_url(bucket, key, expires=timedelta(minutes=5))
    status, headers, data = http("GET", get)
    assert status == 200
    assert data == body
    assert headers["Content-Type"] == "image/jpeg"

    forced = presigner.get_url(
        bucket, key, expires=MINUTE, response_content_type="application/octet-stream"
    )
    status, headers, _ = http("GET", forced)
    assert (status, headers["Content-Type"]) == (200, "application/octet-stream")


def test_an_expired_url_is_refused(s3: S3Config, bucket: str) -> None:
    s3.client().put_object(bucket, "docs/x.txt", io.BytesIO(b"x"), 1)
    url = Presigner(s3).get_url(bucket, "docs/x.txt", expires=timedelta(seconds=1))
    time.sleep(2)
    status, _, body = http("GET", url)
    assert status == 403
    assert b"<Code>AccessDenied</Code>" in body
    assert b"Request has expired" in body


@pytest.mark.parametrize("backend", ["minio", "boto3"])
@pytest.mark.parametrize("content_type", ["image/png", "image/"])
def test_post_policy_enforces_prefix_type_and_size(
    s3: S3Config, bucket: str, backend: str, content_type: str
) -> None:
    post = Presigner(s3, backend=backend).post_policy(  # type: ignore[arg-type]
        bucket, key_prefix="profiles/7/", content_type=content_type, max_size=64, expires=MINUTE
    )
    fields = dict(post.fields)
    fields["Content-Type"] = "image/png"

    def upload(fields: dict[str, str], data: bytes, name: str = "me.png") -> tuple[int, bytes]:
        body, form_type = form_data(fields, name, data, fields["Content-Type"])
        status, _, answer = http("POST", post.url, body, {"Content-Type": form_type})
        return status, answer

    status, answer = upload(fields, b"x" * 64)
    assert status == 204, answer
    stat = s3.client().stat_object(bucket, "profiles/7/me.png")
    assert (stat.size, stat.content_type) == (64, "image/png")

    status, answer = upload(fields, b"x" * 65)
    assert status == 400
    assert b"EntityTooLarge" in answer

    status, answer = upload({**fields, "key": "profiles/8/me.png"}, b"x")
    assert status == 403, answer
    assert b"AccessDenied" in answer

    status, answer = upload({**fields, "Content-Type": "text/html"}, b"<script>")
    assert status == 403, answer


@pytest.mark.parametrize("backend", ["minio", "boto3"])
def test_urls_from_both_sdks_work(s3: S3Config, bucket: str, backend: str) -> None:
    presigner = Presigner(s3, backend=backend)  # type: ignore[arg-type]
    key = f"boards/b1/attachments/{backend}.txt"
    put = presigner.put_url(bucket, key, content_type="text/plain", expires=MINUTE)
    assert http("PUT", put, backend.encode(), {"Content-Type": "text/plain"})[0] == 200
    status, headers, data = http("GET", presigner.get_url(bucket, key, expires=MINUTE))
    assert (status, data, headers["Content-Type"]) == (200, backend.encode(), "text/plain")


@pytest.mark.parametrize("backend", ["minio", "boto3"])
def test_put_urls_pin_the_content_type(s3: S3Config, bucket: str, backend: str) -> None:
    presigner = Presigner(s3, backend=backend)  # type: ignore[arg-type]
    key = f"profiles/1/avatar-{backend}.jpg"
    put = presigner.put_url(bucket, key, content_type="image/jpeg", expires=MINUTE)
    for sent in ("text/html", "image/png", "image/jpeg; charset=utf-8"):
        status, _, body = http("PUT", put, b"<html>", {"Content-Type": sent})
        assert status == 403, (sent, body)
        assert b"SignatureDoesNotMatch" in body
    assert s3_code(lambda: s3.client().stat_object(bucket, key)) == "NoSuchKey"

    assert http("PUT", put, b"\xff\xd8", {"Content-Type": "image/jpeg"})[0] == 200
    assert s3.client().stat_object(bucket, key).content_type == "image/jpeg"


def test_pinned_put_urls_sign_unusual_keys_as_the_server_reads_them(
    s3: S3Config, bucket: str
) -> None:
    key = "boards/b1/attachments/r\u00e9sum\u00e9 +1 (2)~=&%.txt"
    put = Presigner(s3).put_url(bucket, key, content_type="text/plain", expires=MINUTE)
    assert http("PUT", put, b"cv", {"Content-Type": "text/plain"})[0] == 200
    assert s3.client().get_object(bucket, key).read() == b"cv"


def test_urls_are_signed_for_the_public_endpoint(
    s3: S3Config, settings: StackSettings, bucket: str
) -> None:
    public = dataclasses.replace(s3, public_endpoint=f"http://localhost:{settings.minio_api_port}")
    presigner = Presigner(public)
    put = presigner.put_url(bucket, "video/r1/clip.txt", content_type="text/plain", expires=MINUTE)
    assert urlsplit(put).netloc == f"localhost:{settings.minio_api_port}"
    assert http("PUT", put, b"clip", {"Content-Type": "text/plain"})[0] == 200
    get = presigner.get_url(bucket, "video/r1/clip.txt", expires=MINUTE)
    assert http("GET", get)[2] == b"clip"

    # The same URL sent to another host name fails: the signature covers Host.
    parts = urlsplit(get)
    moved = urlunsplit(parts._replace(netloc=f"127.0.0.1:{settings.minio_api_port}"))
    status, _, body = http("GET", moved)
    assert status == 403
    assert b"SignatureDoesNotMatch" in body


# --- per-service credentials ------------------------------------------------------------------


def test_service_keys_are_confined_to_their_prefixes(
    s3: S3Config, buckets: Buckets, services: Services
) -> None:
    shared = buckets.create("shared")
    other = buckets.create("other")
    root = s3.client()
    root.put_object(shared, "b/secret.txt", io.BytesIO(b"b's"), 3)
    root.put_object(other, "a/x.txt", io.BytesIO(b"x"), 1)

    a = service_client(s3, services.ensure("a", bucket=shared, prefixes=["a/"]))
    services.ensure("b", bucket=shared, prefixes=["b/"])

    # Its own prefix: write, read, list.
    a.put_object(shared, "a/mine.txt", io.BytesIO(b"mine"), 4)
    assert a.get_object(shared, "a/mine.txt").read() == b"mine"
    assert [o.object_name for o in a.list_objects(shared, prefix="a/")] == ["a/mine.txt"]

    # Another service's prefix: no read, write, delete or listing.
    assert s3_code(lambda: a.get_object(shared, "b/secret.txt")) == "AccessDenied"
    assert (
        s3_code(lambda: a.put_object(shared, "b/evil.txt", io.BytesIO(b"x"), 1)) == "AccessDenied"
    )
    assert s3_code(lambda: a.list_objects(shared, prefix="b/")) == "AccessDenied"
    assert s3_code(lambda: a.list_objects(shared)) == "AccessDenied"
    assert s3_code(lambda: a.list_objects(shared, prefix="a")) == "AccessDenied"
    assert s3_code(lambda: a.remove_object(shared, "b/secret.txt")) == "AccessDenied"
    assert root.get_object(shared, "b/secret.txt").read() == b"b's"

    # Another bucket, even under the same prefix name.
    assert s3_code(lambda: a.get_object(other, "a/x.txt")) == "AccessDenied"
    assert s3_code(lambda: a.put_object(other, "a/y.txt", io.BytesIO(b"y"), 1)) == "AccessDenied"
    assert s3_code(lambda: a.list_objects(other, prefix="a/")) == "AccessDenied"


@pytest.mark.parametrize("prefix", ["b*/", "board?/", "${aws:username}/", "b/*/"])
def test_a_wildcard_prefix_gets_no_user_and_no_access(
    s3: S3Config, buckets: Buckets, services: Services, prefix: str
) -> None:
    shared = buckets.create("wild")
    s3.client().put_object(shared, "boards/1/secret.txt", io.BytesIO(b"b's"), 3)
    with pytest.raises(InvalidObjectKey, match="prefixes may hold only"):
        services.ensure("wild", bucket=shared, prefixes=[prefix])
    # Refused before anything was written: the user does not exist on the server.
    user = f"svc-t{services.tag}-wild"
    listed = json.loads(s3.admin_client().user_list())
    assert user not in listed


def test_service_user_is_idempotent_and_follows_its_secret(
    s3: S3Config, bucket: str, services: Services
) -> None:
    first = services.ensure("c", bucket=bucket, prefixes=["c/"], secret="first-secret-1")
    assert first.change is Change.CREATED
    assert first.access_key == f"svc-t{services.tag}-c"
    assert "first-secret-1" not in repr(first)

    pool = RecordingPool()
    again = ensure_service_user(
        s3,
        services.made[0],
        bucket=bucket,
        prefixes=["c/"],
        secret_key="first-secret-1",
        http_client=pool,
    )
    assert again.change is Change.UNCHANGED
    assert pool.writes == []

    rotated = services.ensure("c", bucket=bucket, prefixes=["c/"], secret="second-secret-2")
    assert rotated.change is Change.CHANGED
    assert s3_code(lambda: service_client(s3, rotated).list_objects(bucket, prefix="c/")) is None
    assert (
        s3_code(lambda: service_client(s3, first).list_objects(bucket, prefix="c/"))
        == "SignatureDoesNotMatch"
    )

    widened = services.ensure("c", bucket=bucket, prefixes=["c/", "d/"], secret="second-secret-2")
    assert widened.change is Change.CHANGED
    client = service_client(s3, widened)
    client.put_object(bucket, "d/x", io.BytesIO(b"x"), 1)


def test_service_users_need_a_minio_server(s3: S3Config, bucket: str) -> None:
    plain_s3 = dataclasses.replace(s3, minio_admin=False)
    with pytest.raises(ProvisionError, match="MinIO") as info:
        ensure_service_user(
            plain_s3, "board-service", bucket=bucket, prefixes=["boards/"], secret_key="whatever-1"
        )
    assert "IAM credentials by other means" in str(info.value)


# --- buckets ---------------------------------------------------------------------------------


def test_bucket_provisioning_is_idempotent(s3: S3Config, buckets: Buckets) -> None:
    pool = RecordingPool()
    manager = BucketManager(s3, http_client=pool)
    name = buckets.name("idem")
    declared: dict[str, Any] = {
        "versioning": True,
        "lifecycle": [LifecycleRule(prefix="tmp/", expire_days=3)],
        "cors": [CorsRule(allowed_origins=("http://localhost:5173",))],
        "public_read_prefixes": ["profiles/", "public/"],
        "quota_bytes": 10 * 1024**3,
    }

    first = manager.ensure_bucket(name, **declared)
    assert dict(first.aspects) == {
        "bucket": Change.CREATED,
        "versioning": Change.CREATED,
        "lifecycle": Change.CREATED,
        "policy": Change.CREATED,
        "cors": Change.UNSUPPORTED,
        "quota": Change.CREATED,
    }
    assert any("cors_allow_origin" in note for note in first.notes)

    pool.requests.clear()
    second = manager.ensure_bucket(name, **declared)
    assert set(second.aspects.values()) <= {Change.UNCHANGED, Change.UNSUPPORTED}
    assert not second.changed
    assert pool.writes == []

    # A fresh manager finds the same; only its one CORS attempt may write.
    fresh = BucketManager(s3).ensure_bucket(name, **declared)
    assert not fresh.changed

    changed = manager.ensure_bucket(
        name, **{**declared, "lifecycle": [LifecycleRule(prefix="tmp/", expire_days=7)]}
    )
    assert changed["lifecycle"] is Change.CHANGED
    assert [a for a, c in changed.aspects.items() if c is Change.CHANGED] == ["lifecycle"]
    rules = s3.client().get_bucket_lifecycle(name)
    assert rules is not None
    assert [r.expiration.days for r in rules.rules if r.expiration] == [7]


def test_a_policy_written_in_another_order_is_unchanged(
    s3: S3Config, manager: BucketManager, buckets: Buckets
) -> None:
    name = buckets.create("order", public_read_prefixes=["profiles/", "public/"])
    client = s3.client()
    policy = json.loads(client.get_bucket_policy(name))
    statements = policy["Statement"]
    assert len(statements) == 2
    # Another writer's spelling of the same policy: statements reversed,
    # strings instead of one-item lists, "*" principal, no Sid.
    rewritten = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": s["Effect"],
                "Principal": "*",
                "Action": s["Action"][0],
                "Resource": s["Resource"][0],
            }
            for s in reversed(statements)
        ],
    }
    client.set_bucket_policy(name, json.dumps(rewritten))
    stored = client.get_bucket_policy(name)

    pool = RecordingPool()
    report = BucketManager(s3, http_client=pool).ensure_bucket(
        name, public_read_prefixes=["public/", "profiles/"]
    )
    assert report["policy"] is Change.UNCHANGED
    assert pool.writes == []
    assert client.get_bucket_policy(name) == stored

    narrowed = manager.ensure_bucket(name, public_read_prefixes=["profiles/"])
    assert narrowed["policy"] is Change.CHANGED
    private = manager.ensure_bucket(name)
    assert private["policy"] is Change.CHANGED
    assert s3_code(lambda: client.get_bucket_policy(name)) == "NoSuchBucketPolicy"
    assert manager.ensure_bucket(name)["policy"] is Change.UNCHANGED


def test_public_read_prefix_is_readable_anonymously_and_nothing_else(
    s3: S3Config, manager: BucketManager, buckets: Buckets
) -> None:
    name = buckets.create("public", public_read_prefixes=["profiles/"])
    client = s3.client()
    client.put_object(name, "profiles/1/avatar.jpg", io.BytesIO(b"face"), 4, "image/jpeg")
    client.put_object(name, "boards/1/attachments/plan.pdf", io.BytesIO(b"plan"), 4)
    base = s3.endpoint

    status, headers, body = http("GET", f"{base}/{name}/profiles/1/avatar.jpg")
    assert (status, body, headers["Content-Type"]) == (200, b"face", "image/jpeg")
    assert http("GET", f"{base}/{name}/boards/1/attachments/plan.pdf")[0] == 403
    assert http("GET", f"{base}/{name}?list-type=2&prefix=profiles/")[0] == 403
    assert http("PUT", f"{base}/{name}/profiles/2/avatar.jpg", b"x")[0] == 403

    manager.ensure_bucket(name)
    assert http("GET", f"{base}/{name}/profiles/1/avatar.jpg")[0] == 403


def test_versioning_off_suspends_and_quota_none_clears(
    s3: S3Config, manager: BucketManager, buckets: Buckets
) -> None:
    name = buckets.create("ver", versioning=True, quota_bytes=1024**3)
    admin = s3.admin_client()
    assert json.loads(admin.bucket_quota_get(name))["quota"] == 1024**3
    report = manager.ensure_bucket(name)
    assert (report["versioning"], report["quota"]) == (Change.CHANGED, Change.CHANGED)
    assert s3.client().get_bucket_versioning(name).status == "Suspended"
    assert json.loads(admin.bucket_quota_get(name))["quota"] == 0
    again = manager.ensure_bucket(name)
    assert (again["versioning"], again["quota"]) == (Change.UNCHANGED, Change.UNCHANGED)


def test_abort_incomplete_uploads_is_reported_unsupported_on_minio(
    manager: BucketManager, buckets: Buckets
) -> None:
    name = buckets.name("abort")
    rules = [
        LifecycleRule(prefix="tmp/", expire_days=1, abort_incomplete_multipart_days=1),
        LifecycleRule(prefix="uploads/", abort_incomplete_multipart_days=2),
    ]
    report = manager.ensure_bucket(name, lifecycle=rules)
    assert report["abort_incomplete_multipart"] is Change.UNSUPPORTED
    assert report["lifecycle"] is Change.CREATED
    assert any("stale_uploads_expiry" in note for note in report.notes)
    assert manager.ensure_bucket(name, lifecycle=rules)["lifecycle"] is Change.UNCHANGED


def test_quota_is_unsupported_without_minio_admin(s3: S3Config, buckets: Buckets) -> None:
    name = buckets.create("noadmin")
    report = BucketManager(dataclasses.replace(s3, minio_admin=False)).ensure_bucket(
        name, quota_bytes=1024
    )
    assert report["quota"] is Change.UNSUPPORTED
    assert any("MinIO admin feature" in note for note in report.notes)


# --- failures -------------------------------------------------------------------------------


def test_unreachable_endpoint_is_service_unavailable_quickly(s3: S3Config) -> None:
    down = dataclasses.replace(s3, endpoint=f"http://127.0.0.1:{free_port()}", public_endpoint="")
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="inv status") as info:
        BucketManager(down).ensure_bucket("test-unreachable")
    assert time.monotonic() - started < 5
    assert info.value.service == "minio"
    # Presigning needs no server at all.
    assert Presigner(down).put_url("test-x", "a/b", content_type="text/plain", expires=MINUTE)


def test_a_server_that_never_answers_times_out(s3: S3Config) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        accepted: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    accepted.append(listener.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        port = listener.getsockname()[1]
        silent = dataclasses.replace(
            s3, endpoint=f"http://127.0.0.1:{port}", public_endpoint="", timeout=0.5
        )
        started = time.monotonic()
        try:
            with pytest.raises(ServiceUnavailable, match="cannot reach MinIO"):
                BucketManager(silent).ensure_bucket("test-silent")
        finally:
            stop.set()
            thread.join()
            for conn in accepted:
                conn.close()
        assert time.monotonic() - started < 10


def test_wrong_root_secret_is_service_unavailable_without_the_secret(s3: S3Config) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    bad = dataclasses.replace(s3, secret_key=wrong)
    with pytest.raises(ServiceUnavailable, match="MINIO_ROOT_PASSWORD") as info:
        BucketManager(bad).ensure_bucket(f"test-{uuid.uuid4().hex[:8]}-denied")
    assert wrong not in str(info.value)
    assert s3.secret_key not in str(info.value)
    assert info.value.service == "minio"

    with pytest.raises(ServiceUnavailable, match="MINIO_ROOT_USER") as info:
        ensure_service_user(
            bad, "board-service", bucket="test-x", prefixes=["boards/"], secret_key="service-pw-1"
        )
    assert wrong not in str(info.value)
    assert "service-pw-1" not in str(info.value)
