"""Key layout, key and prefix checks, expiry bounds, policy comparison: no server needed."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from infra_lib.errors import ConfigError, InvalidObjectKey
from infra_lib.storage import keys as keys_module
from infra_lib.storage.buckets import (
    CorsRule,
    LifecycleRule,
    canonical_policy,
    public_read_policy,
    same_policy,
)
from infra_lib.storage.config import MAX_PRESIGN_EXPIRY, S3Config, check_expiry
from infra_lib.storage.credentials import service_access_key, service_policy
from infra_lib.storage.keys import (
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
from infra_lib.storage.presign import Presigner, check_content_type

# Segments a hostile client might send, each refused for its own reason.
BAD_SEGMENTS = [
    "",
    ".",
    "..",
    "a/b",
    "../x",
    "/",
    "a\\b",
    "a\x00b",
    "line\nbreak",
    "tab\there",
    "del\x7f",
    "c1\x85",
    "sep\u2028",
    "x" * 256,
    "é" * 128,  # 256 bytes of UTF-8
    "\ud800",
]

_safe_chars = st.characters(
    blacklist_categories=("Cs", "Cc"),
    blacklist_characters="/\\\u2028\u2029",
)
safe_segments = (
    st.text(_safe_chars, min_size=1, max_size=40)
    .filter(lambda s: s not in (".", ".."))
    .filter(lambda s: len(s.encode()) <= 255)
)


def config(**overrides: object) -> S3Config:
    values: dict[str, object] = {
        "endpoint": "http://127.0.0.1:1",
        "access_key": "unit-access",
        "secret_key": "unit-secret-value",
    }
    values.update(overrides)
    return S3Config(**values)  # type: ignore[arg-type]


# --- layout ----------------------------------------------------------------------


def test_reference_layout() -> None:
    user = UUID("12345678-1234-5678-1234-567812345678")
    assert avatar_key(user) == f"profiles/{user}/avatar.jpg"
    assert avatar_key(42) == "profiles/42/avatar.jpg"
    assert board_attachment_key("b1", "plan v2.pdf") == "boards/b1/attachments/plan v2.pdf"
    assert board_attachments_prefix("b1") == "boards/b1/attachments/"
    assert storage_key("w", "f", "file-1") == "storage/w/f/file-1"
    assert video_prefix("room-9") == "video/room-9/"


@pytest.mark.parametrize("bad", BAD_SEGMENTS)
def test_every_helper_refuses_unsafe_segments(bad: str) -> None:
    for build in (
        lambda: avatar_key(bad),
        lambda: board_attachment_key(bad, "f.png"),
        lambda: board_attachment_key("b1", bad),
        lambda: board_attachments_prefix(bad),
        lambda: storage_key(bad, "f", "x"),
        lambda: storage_key("w", bad, "x"),
        lambda: storage_key("w", "f", bad),
        lambda: video_prefix(bad),
    ):
        with pytest.raises(InvalidObjectKey):
            build()


def test_refusal_names_the_segment_and_what_it_is() -> None:
    with pytest.raises(InvalidObjectKey, match=r"attachment file name '\.\.'") as info:
        board_attachment_key("b1", "..")
    assert info.value.key == ".."
    assert isinstance(info.value, ConfigError)
    with pytest.raises(InvalidObjectKey, match="user id 'a/b' contains '/'"):
        avatar_key("a/b")


def test_non_string_segments_are_refused() -> None:
    with pytest.raises(InvalidObjectKey):
        avatar_key(True)
    with pytest.raises(InvalidObjectKey):
        avatar_key(1.5)  # type: ignore[arg-type]


def test_long_keys_are_shortened_in_messages() -> None:
    with pytest.raises(InvalidObjectKey) as info:
        avatar_key("x" * 5000)
    assert len(str(info.value)) < 300


@given(user=safe_segments, board=safe_segments, name=safe_segments)
def test_helpers_keep_every_safe_segment_in_its_own_level(user: str, board: str, name: str) -> None:
    key = avatar_key(user)
    assert key.split("/") == ["profiles", user, "avatar.jpg"]
    assert validate_key(key, allowed_prefixes=["profiles/"]) == key
    key = board_attachment_key(board, name)
    assert key.split("/") == ["boards", board, "attachments", name]
    assert validate_key(key, allowed_prefixes=[board_attachments_prefix(board)]) == key


@given(segment=st.text(max_size=20))
@example(segment="..")
@example(segment="a/../b")
def test_a_segment_either_is_refused_or_stays_one_safe_level(segment: str) -> None:
    try:
        key = storage_key("w", "f", segment)
    except InvalidObjectKey:
        return
    parts = key.split("/")
    assert len(parts) == 4
    assert parts[3] == segment
    assert segment not in ("", ".", "..")


# --- whole keys ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "profiles/../boards/b1/x",
        "profiles/./x",
        "profiles//x",
        "/profiles/x",
        "profiles/x/",
        "profiles/a\\..\\b",
        "profiles/\x00",
        "",
        "p/" + "x" * 1030,
    ],
)
def test_validate_key_refuses_traversal_and_malformed_keys(key: str) -> None:
    with pytest.raises(InvalidObjectKey):
        validate_key(key, allowed_prefixes=["profiles/"])


def test_validate_key_refuses_other_prefixes() -> None:
    with pytest.raises(InvalidObjectKey, match="outside the allowed prefixes 'boards/'"):
        validate_key("boards-archive/x", allowed_prefixes=["boards/"])
    with pytest.raises(InvalidObjectKey, match=r"\(none\)"):
        validate_key("boards/x", allowed_prefixes=[])
    assert validate_key("boards/x", allowed_prefixes="boards/") == "boards/x"
    assert validate_key("boards/.keep", allowed_prefixes=["boards/"]) == "boards/.keep"


@given(key=st.text(max_size=60))
@example(key="a/.b")
@example(key=".a/b")
@example(key="a/..")
@example(key="é/../x")
def test_fast_and_slow_key_checks_agree(key: str) -> None:
    def outcome(check: object) -> bool:
        try:
            check(key)  # type: ignore[operator]
        except InvalidObjectKey:
            return False
        return True

    assert outcome(check_key) == outcome(keys_module._check_key_slowly)


@given(key=st.lists(safe_segments, min_size=1, max_size=5).map("/".join))
def test_keys_of_safe_segments_pass(key: str) -> None:
    if len(key.encode()) <= 1024:
        assert check_key(key) == key


@pytest.mark.parametrize("prefix", ["", "/", "boards", "/boards/", "a//", "a/../", "./"])
def test_prefixes_must_be_safe_and_end_in_a_slash(prefix: str) -> None:
    with pytest.raises(InvalidObjectKey):
        check_prefix(prefix)
    assert check_prefix("boards/b1/") == "boards/b1/"


# Characters IAM and bucket policies give a meaning: wildcards and ${variables}.
POLICY_METACHARACTERS = "*?${}"
_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"


@pytest.mark.parametrize("prefix", ["b*/", "board?/", "${aws:username}/", "a/*/", "x{y}/"])
def test_prefixes_with_policy_wildcards_or_variables_are_refused(prefix: str) -> None:
    with pytest.raises(InvalidObjectKey, match="prefixes may hold only"):
        check_prefix(prefix)


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4))
@example(["b*"])
@example(["${aws:username}"])
@example(["boards", "é"])
def test_accepted_prefixes_hold_only_the_safe_set(segments: list[str]) -> None:
    prefix = "/".join(segments) + "/"
    try:
        checked = check_prefix(prefix)
    except InvalidObjectKey:
        safe = all(set(seg) <= set(_SAFE) and seg not in (".", "..") for seg in segments)
        assert not safe, f"{prefix!r} is made of safe segments yet was refused"
        return
    assert checked == prefix
    assert set(prefix) <= set(_SAFE + "/")
    assert not set(prefix) & set(POLICY_METACHARACTERS)
    # The policy resource of an accepted prefix matches only keys under it, literally.
    assert service_policy("bucket-a", [prefix])["Statement"][0]["Resource"] == [
        f"arn:aws:s3:::bucket-a/{prefix}*"
    ]


@given(st.lists(st.text(alphabet=_SAFE, min_size=1, max_size=12), min_size=1, max_size=4))
def test_prefixes_of_safe_segments_pass(segments: list[str]) -> None:
    prefix = "/".join(segments) + "/"
    if any(seg in (".", "..") for seg in segments):
        with pytest.raises(InvalidObjectKey):
            check_prefix(prefix)
    else:
        assert check_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "name", ["ab", "Bucket", "-abc", "abc-", "a..b", "192.168.1.1", "xn--abc", "a_b", "a" * 64]
)
def test_bucket_names_follow_s3_rules(name: str) -> None:
    with pytest.raises(ConfigError):
        check_bucket_name(name)
    assert check_bucket_name("collab-dev-files") == "collab-dev-files"


def test_check_segment_accepts_ints_and_uuids() -> None:
    assert check_segment(7) == "7"
    assert check_segment(UUID(int=1)) == str(UUID(int=1))


# --- expiry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expires",
    [
        timedelta(0),
        timedelta(seconds=-1),
        timedelta(days=-7),
        MAX_PRESIGN_EXPIRY + timedelta(seconds=1),
        timedelta(days=30),
        timedelta(milliseconds=500),
        timedelta(seconds=1.5),
    ],
)
def test_expiry_out_of_bounds_is_refused_with_the_limits(expires: timedelta) -> None:
    with pytest.raises(ConfigError, match=r"1 second to 7 days \(604800 s\)"):
        check_expiry(expires)


def test_expiry_bounds_are_inclusive() -> None:
    assert check_expiry(timedelta(seconds=1)) == 1
    assert check_expiry(MAX_PRESIGN_EXPIRY) == 604800
    with pytest.raises(ConfigError, match="timedelta"):
        check_expiry(900)  # type: ignore[arg-type]


@pytest.mark.parametrize("expires", [timedelta(0), timedelta(days=8), timedelta(seconds=-5)])
def test_presigner_applies_the_expiry_bounds(expires: timedelta) -> None:
    presigner = Presigner(config())
    with pytest.raises(ConfigError, match="7 days"):
        presigner.put_url("bucket-a", "k/x", content_type="image/png", expires=expires)
    with pytest.raises(ConfigError, match="7 days"):
        presigner.get_url("bucket-a", "k/x", expires=expires)
    with pytest.raises(ConfigError, match="7 days"):
        presigner.post_policy(
            "bucket-a", key_prefix="k/", content_type="image/", max_size=10, expires=expires
        )


# --- presigning offline -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["minio", "boto3"])
def test_presigning_is_offline_and_signed_for_the_public_host(backend: str) -> None:
    # Nothing listens on port 1: any network call would fail the test.
    presigner = Presigner(
        config(public_endpoint="https://files.example.com"),
        backend=backend,  # type: ignore[arg-type]
    )
    url = presigner.put_url(
        "bucket-a", "profiles/1/avatar.jpg", content_type="image/jpeg", expires=timedelta(minutes=5)
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "files.example.com")
    assert parts.path == "/bucket-a/profiles/1/avatar.jpg"
    query = parse_qs(parts.query)
    assert query["X-Amz-Expires"] == ["300"]
    assert query["X-Amz-Credential"][0].startswith("unit-access/")
    assert "/us-east-1/s3/aws4_request" in query["X-Amz-Credential"][0]
    assert "unit-secret-value" not in url


def test_virtual_addressing_puts_the_bucket_in_the_host() -> None:
    presigner = Presigner(config(public_endpoint="https://s3.example.com", addressing="virtual"))
    url = presigner.get_url("bucket-a", "k/x", expires=timedelta(minutes=1))
    assert urlsplit(url).netloc == "bucket-a.s3.example.com"
    post = presigner.post_policy(
        "bucket-a",
        key_prefix="k/",
        content_type="image/",
        max_size=10,
        expires=timedelta(minutes=1),
    )
    assert post.url == "https://bucket-a.s3.example.com/"


def test_presigner_refuses_bad_arguments() -> None:
    presigner = Presigner(config())
    minute = timedelta(minutes=1)
    with pytest.raises(InvalidObjectKey):
        presigner.put_url("bucket-a", "a/../b", content_type="image/png", expires=minute)
    with pytest.raises(ConfigError, match="media type"):
        presigner.put_url("bucket-a", "a/b", content_type="image/png\r\nX-Evil: 1", expires=minute)
    with pytest.raises(ConfigError, match="bucket name 'Not_A_Bucket'"):
        presigner.put_url("Not_A_Bucket", "a/b", content_type="image/png", expires=minute)
    with pytest.raises(ConfigError, match="key prefix"):
        presigner.post_policy(
            "bucket-a", key_prefix="", content_type="image/", max_size=1, expires=minute
        )
    with pytest.raises(ConfigError, match="min_size"):
        presigner.post_policy(
            "bucket-a",
            key_prefix="a/",
            content_type="image/",
            min_size=5,
            max_size=1,
            expires=minute,
        )


def test_post_policy_fields() -> None:
    post = Presigner(config(public_endpoint="http://localhost:9000")).post_policy(
        "bucket-a", key_prefix="profiles/7/", content_type="image/png", max_size=1000,
        expires=timedelta(minutes=10),
    )  # fmt: skip
    assert post.url == "http://localhost:9000/bucket-a"
    assert post.fields["key"] == "profiles/7/${filename}"
    assert post.fields["Content-Type"] == "image/png"
    assert {"policy", "x-amz-signature", "x-amz-credential", "x-amz-date"} <= set(post.fields)


@pytest.mark.parametrize(
    "value", ["image/png", "application/vnd.api+json", "text/plain; charset=utf-8"]
)
def test_content_types_accepted(value: str) -> None:
    assert check_content_type(value) == value


@pytest.mark.parametrize("value", ["", "png", "image/", "image/png\n", "a/b; c"])
def test_content_types_refused(value: str) -> None:
    with pytest.raises(ConfigError):
        check_content_type(value)
    assert check_content_type("image/", allow_prefix=True) == "image/"


# --- config ------------------------------------------------------------------------------------


def test_config_defaults_and_repr() -> None:
    cfg = config()
    assert cfg.public_endpoint == cfg.endpoint
    assert "unit-secret-value" not in repr(cfg)
    assert cfg.region == "us-east-1"
    assert cfg.addressing == "path"


@pytest.mark.parametrize(
    "endpoint",
    [
        "127.0.0.1:9000",
        "ftp://host",
        "http://host/prefix",
        "http://user@host",
        "http://",
        "http://h:0",
    ],
)
def test_config_refuses_unusable_endpoints(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="endpoint"):
        config(endpoint=endpoint)
    with pytest.raises(ConfigError, match="public_endpoint"):
        config(public_endpoint=endpoint)


def test_admin_client_needs_minio_admin() -> None:
    with pytest.raises(ConfigError, match="MinIO-only"):
        config().admin_client()


# --- policies ---------------------------------------------------------------------------------


def test_policies_compare_by_meaning() -> None:
    ours = public_read_policy("bucket-a", ["profiles/", "public/"])
    theirs = {
        # Another writer's spelling: reordered, strings for lists, "*" principal,
        # different Sids, upper-case action, no Version.
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "S3:GetObject",
                "Resource": "arn:aws:s3:::bucket-a/public/*",
            },
            {
                "Sid": "x",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": ["s3:GetObject"],
                "Resource": ["arn:aws:s3:::bucket-a/profiles/*"],
            },
        ]
    }
    assert same_policy(json.dumps(theirs), ours)
    assert same_policy(ours, json.dumps(ours))


def test_policies_that_differ_in_meaning_are_different() -> None:
    ours = public_read_policy("bucket-a", ["profiles/"])
    wider = public_read_policy("bucket-a", ["profiles/", "boards/"])
    assert not same_policy(ours, wider)
    denied = json.loads(json.dumps(ours))
    denied["Statement"][0]["Effect"] = "Deny"
    assert not same_policy(ours, denied)


def test_policy_version_matters_only_with_policy_variables() -> None:
    doc = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::b/${aws:username}/*",
            }
        ]
    }
    assert not same_policy(doc, {**doc, "Version": "2012-10-17"})
    plain = {
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]
    }
    assert same_policy(plain, {**plain, "Version": "2012-10-17"})


def test_service_policy_condition_order_does_not_matter() -> None:
    policy = service_policy("bucket-a", ["a/", "b/"])
    swapped = service_policy("bucket-a", ["b/", "a/"])
    assert canonical_policy(policy) == canonical_policy(swapped)
    listing = policy["Statement"][1]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["a/*", "b/*"]}}


def test_not_a_policy() -> None:
    with pytest.raises(ConfigError):
        canonical_policy("not json")
    with pytest.raises(ConfigError):
        canonical_policy("[]")


def test_service_access_key() -> None:
    assert service_access_key("board-service") == "svc-board-service"
    with pytest.raises(ConfigError):
        service_access_key("Board Service")


def test_rule_validation() -> None:
    with pytest.raises(ConfigError, match="does nothing"):
        LifecycleRule(prefix="tmp/")
    with pytest.raises(ConfigError):
        LifecycleRule(prefix="tmp/", expire_days=0)
    with pytest.raises(ConfigError):
        LifecycleRule(prefix="tmp", expire_days=1)
    assert LifecycleRule(expire_days=1).id == "whole-bucket"
    with pytest.raises(ConfigError):
        CorsRule(allowed_origins=())
    with pytest.raises(ConfigError):
        CorsRule(allowed_origins=("http://a",), allowed_methods=("PATCH",))


# --- import cost -------------------------------------------------------------------------------


def test_importing_the_package_loads_no_sdk() -> None:
    code = (
        "import sys\n"
        "import infra_lib.storage, infra_lib.storage.config, infra_lib.storage.keys\n"
        "from infra_lib.storage import S3Config, avatar_key, check_expiry, validate_key\n"
        "S3Config(endpoint='http://h:1', access_key='a', secret_key='b')\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'minio', 'boto3', 'botocore', 'urllib3'})\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_pinned_put_signature_matches_the_aws_reference_example() -> None:
    # AWS's documented query-string example ("Authenticating Requests: Using
    # Query Parameters"): GET examplebucket/test.txt, 2013-05-24, 86400 s.
    from datetime import UTC, datetime

    from infra_lib.storage.sigv4 import QuerySigner

    signer = QuerySigner(
        endpoint="https://s3.amazonaws.com",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        addressing="virtual",
    )
    url = signer.url(
        "GET", "examplebucket", "test.txt", expires=86400, headers={},
        now=datetime(2013, 5, 24, tzinfo=UTC),
    )  # fmt: skip
    assert url.startswith("https://examplebucket.s3.amazonaws.com/test.txt?")
    assert url.endswith(
        "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )


def test_minio_backend_put_urls_sign_the_content_type() -> None:
    config = S3Config(endpoint="http://127.0.0.1:9000", access_key="a", secret_key="b" * 8)
    url = Presigner(config).put_url(
        "bucket-a", "profiles/1/avatar.jpg", content_type="image/jpeg", expires=timedelta(minutes=1)
    )
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-SignedHeaders"] == ["content-type;host"]
    assert query["X-Amz-Expires"] == ["60"]
