"""The library and the tasks against an object store addressed like AWS S3.

Virtual-host-style URLs (``bucket.s3.<region>.<domain>``) and a region other
than us-east-1, with the admin's keys given by configuration
(``S3_ENDPOINT``, ``S3_REGION``, ``S3_ADDRESSING``, ``S3_ACCESS_KEY_ID``,
``S3_SECRET_ACCESS_KEY_FILE``). MinIO's own admin API (per-service users) is
not there, as on AWS.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from infra_lib.stack.settings import load_stack_settings
from infra_lib.storage.buckets import BucketManager
from infra_lib.storage.config import S3Config
from infra_lib.storage.presign import Presigner

from .conftest import isolated_environ
from .managed import S3_DOMAIN, S3_REGION, AwsLikeS3, ManagedTarget
from .test_storage import form_data, http

BUCKET = "ledger-prod-files"
MINUTE = timedelta(minutes=1)

MANIFEST = f"""\
[project]
name = "ledger"
bucket = "{BUCKET}"

[services.ledger-service]
storage = {{ prefixes = ["ledger/"] }}
"""

Target = ManagedTarget[AwsLikeS3]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    server = AwsLikeS3.start()
    found = ManagedTarget.write(
        tmp_path_factory.mktemp("aws-like"), f"aws-like-{os.getpid()}", server, MANIFEST
    )
    try:
        server.resolve(f"{BUCKET}.{S3_DOMAIN}")
        yield found
    finally:
        found.remove()


@pytest.fixture(scope="module")
def s3(target: Target) -> S3Config:
    """The store as the settings describe it: what every task would use."""
    config = S3Config.from_stack(load_stack_settings(target.env_file, environ=isolated_environ()))
    assert (config.region, config.addressing, config.minio_admin) == (S3_REGION, "virtual", False)
    return config


@pytest.fixture(scope="module")
def bucket(s3: S3Config) -> str:
    report = BucketManager(s3).ensure_bucket(BUCKET)
    assert report["bucket"].value in {"created", "unchanged"}
    return BUCKET


@pytest.mark.parametrize("backend", ["minio", "boto3"])
def test_presigned_put_and_get_use_the_bucket_host_and_the_region(
    s3: S3Config, bucket: str, backend: str
) -> None:
    presigner = Presigner(s3, backend=backend)  # type: ignore[arg-type]
    key = f"ledger/{backend}/receipt.txt"
    put = presigner.put_url(bucket, key, content_type="text/plain", expires=MINUTE)
    assert urlsplit(put).hostname == f"{bucket}.{S3_DOMAIN}"
    assert f"%2F{S3_REGION}%2Fs3%2Faws4_request" in put
    status, _, answer = http("PUT", put, b"paid", {"Content-Type": "text/plain"})
    assert status == 200, answer

    get = presigner.get_url(bucket, key, expires=MINUTE)
    assert urlsplit(get).hostname == f"{bucket}.{S3_DOMAIN}"
    status, _, body = http("GET", get)
    assert (status, body) == (200, b"paid")


def test_a_url_signed_for_another_region_is_refused(s3: S3Config, bucket: str) -> None:
    from dataclasses import replace

    wrong = Presigner(replace(s3, region="us-east-1"))
    status, _, answer = http(
        "PUT",
        wrong.put_url(bucket, "ledger/x.txt", content_type="text/plain", expires=MINUTE),
        b"x",
        {"Content-Type": "text/plain"},
    )
    # AWS says AuthorizationHeaderMalformed, MinIO (this release) MissingFields.
    assert status in {400, 403}, answer
    status, _, _ = http("GET", Presigner(s3).get_url(bucket, "ledger/x.txt", expires=MINUTE))
    assert status == 404, "nothing was stored"


@pytest.mark.parametrize("backend", ["minio", "boto3"])
def test_presigned_post_works_on_the_bucket_host(s3: S3Config, bucket: str, backend: str) -> None:
    post = Presigner(s3, backend=backend).post_policy(  # type: ignore[arg-type]
        bucket, key_prefix="ledger/forms/", content_type="image/", max_size=64, expires=MINUTE
    )
    assert urlsplit(post.url).hostname == f"{bucket}.{S3_DOMAIN}"
    fields = {**dict(post.fields), "Content-Type": "image/png"}
    body, form_type = form_data(fields, "scan.png", b"x" * 10, "image/png")
    status, _, answer = http("POST", post.url, body, {"Content-Type": form_type})
    assert status == 204, answer
    status, _, data = http(
        "GET", Presigner(s3).get_url(bucket, "ledger/forms/scan.png", expires=MINUTE)
    )
    assert (status, data) == (200, b"x" * 10)


def test_provisioning_refuses_service_users_before_any_change(target: Target) -> None:
    code, _, err = target.inv("provision")
    assert code != 0
    assert "per-service users are a MinIO feature" in err
    assert "service_policy()" in err
    assert not (target.env_dir / "ledger-service.env").exists()
    # The admin's keys come from the file the env file names, never from it.
    assert target.server.admin_password not in target.env_file.read_text()
