"""TURN REST credentials and the STUN client, against a local UDP peer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import struct
import threading

import pytest

from infra_lib.stack.probes import stun_binding
from infra_lib.turn import turn_credentials


def test_turn_credentials_follow_the_rest_scheme() -> None:
    creds = turn_credentials("s3cret", "alice", ttl_seconds=60, now=1_000)
    assert creds.username == "1060:alice"
    expected = base64.b64encode(hmac.new(b"s3cret", b"1060:alice", hashlib.sha1).digest())
    assert creds.credential == expected.decode()


@pytest.mark.parametrize(("user", "ttl"), [("", 60), ("a:b", 60), ("ok", 0)])
def test_turn_credentials_reject_bad_input(user: str, ttl: int) -> None:
    with pytest.raises(ValueError):
        turn_credentials("s", user, ttl_seconds=ttl)


def _fake_stun_server(sock: socket.socket) -> None:
    # Answers one Binding Request the way RFC 5389 says, with XOR-MAPPED-ADDRESS.
    data, peer = sock.recvfrom(2048)
    transaction = data[8:20]
    magic = 0x2112A442
    ip = struct.unpack("!I", socket.inet_aton(peer[0]))[0] ^ magic
    attr = struct.pack("!HHBBHI", 0x0020, 8, 0, 1, peer[1] ^ (magic >> 16), ip)
    sock.sendto(struct.pack("!HHI", 0x0101, len(attr), magic) + transaction + attr, peer)


def test_stun_binding_reads_the_mapped_address() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        thread = threading.Thread(target=_fake_stun_server, args=(server,))
        thread.start()
        addr, port = stun_binding("127.0.0.1", server.getsockname()[1], timeout=2)
        thread.join()
    assert addr == "127.0.0.1"
    assert port > 0


def test_stun_binding_times_out_without_a_server() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        with pytest.raises(OSError):
            stun_binding("127.0.0.1", silent.getsockname()[1], timeout=0.2)
