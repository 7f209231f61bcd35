"""SCRAM verification and connection settings (no server needed)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from infra_lib.postgres.config import PostgresConfig
from infra_lib.postgres.scram import scram_matches


def _verifier(password: str, salt: bytes = b"0123456789abcdef", iterations: int = 4096) -> str:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client).digest()
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored).decode()}:{b64(server).decode()}"


def test_scram_matches_the_right_password_only() -> None:
    verifier = _verifier("correct horse")
    assert scram_matches(verifier, "correct horse")
    assert not scram_matches(verifier, "correct horsE")


def test_scram_rejects_garbage_and_md5() -> None:
    assert not scram_matches(None, "x")
    assert not scram_matches("md5abcdef", "x")
    assert not scram_matches("SCRAM-SHA-256$notanumber:xx$yy:zz", "x")
    assert not scram_matches("SCRAM-SHA-256$4096:!!!$yy:zz", "x")


def test_config_hides_password_and_builds_urls() -> None:
    config = PostgresConfig(
        host="db.example", port=5433, user="u", password="p@ss/w:rd", dbname="d"
    )
    assert "p@ss" not in repr(config)
    assert config.url() == "postgresql://u:p%40ss%2Fw%3Ard@db.example:5433/d?sslmode=prefer"
    assert "p%40ss" not in config.url(include_password=False)
    managed = PostgresConfig(host="h", password="x", sslmode="verify-full", sslrootcert="/ca.pem")
    assert managed.url().endswith("?sslmode=verify-full&sslrootcert=%2Fca.pem")
    assert managed.connect_kwargs()["sslrootcert"] == "/ca.pem"
