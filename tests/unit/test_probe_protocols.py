"""The probes' own protocol code: RESP framing and S3 error documents."""

from __future__ import annotations

import io
from urllib.parse import urlsplit

import pytest

from infra_lib.stack.probes import _RedisErrorReply, _resp_command, _resp_reply, _s3_error_code
from infra_lib.storage.sigv4 import QuerySigner


def test_a_command_is_an_array_of_bulk_strings_counted_in_bytes() -> None:
    assert _resp_command("AUTH", "pä ss") == b"*2\r\n$4\r\nAUTH\r\n$6\r\np\xc3\xa4 ss\r\n"


@pytest.mark.parametrize(
    ("wire", "reply"),
    [
        (b"+PONG\r\n", b"PONG"),
        (b"$12\r\nredis\r\nx:1\r\n\r\n", b"redis\r\nx:1\r\n"),
        (b"$0\r\n\r\n", b""),
    ],
)
def test_simple_and_bulk_replies(wire: bytes, reply: bytes) -> None:
    assert _resp_reply(io.BytesIO(wire)) == reply


def test_an_error_reply_is_raised_with_its_text() -> None:
    with pytest.raises(_RedisErrorReply, match=r"^WRONGPASS invalid"):
        _resp_reply(io.BytesIO(b"-WRONGPASS invalid username-password pair\r\n"))


@pytest.mark.parametrize("wire", [b"", b"+PON", b"$10\r\nshort\r\n", b":1\r\n", b"$-1\r\n"])
def test_a_cut_or_unexpected_reply_is_a_connection_error(wire: bytes) -> None:
    with pytest.raises(ConnectionError):
        _resp_reply(io.BytesIO(wire))


def test_the_code_of_an_s3_error_document() -> None:
    body = b"<?xml?><Error><Code>SignatureDoesNotMatch</Code><Message>m</Message></Error>"
    assert _s3_error_code(body) == "SignatureDoesNotMatch"
    assert _s3_error_code(b"<html>proxy error</html>") == ""


@pytest.mark.parametrize("addressing", ["path", "virtual"])
def test_an_empty_bucket_signs_the_service_root(addressing: str) -> None:
    signer = QuerySigner(
        endpoint="http://127.0.0.1:9000",
        access_key="k",
        secret_key="s",
        region="us-east-1",
        addressing=addressing,  # type: ignore[arg-type]
    )
    url = urlsplit(signer.url("GET", "", "", expires=60, headers={}))
    assert (url.netloc, url.path) == ("127.0.0.1:9000", "/")
