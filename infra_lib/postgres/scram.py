"""Compare a password with a stored SCRAM-SHA-256 verifier (RFC 5802/7677).

PostgreSQL stores ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``.
Recomputing the keys from a candidate password tells whether the role's
password already is that password, so provisioning can skip ``ALTER ROLE``
instead of reporting "changed" on every run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

__all__ = ["scram_matches"]


def scram_matches(verifier: str | None, password: str) -> bool:
    """Whether ``password`` produces ``verifier``; False for anything unparsable.

    Passwords are compared as UTF-8 without SASLprep normalisation, which is
    exact for the ASCII passwords this library generates.
    """
    if not verifier or not verifier.startswith("SCRAM-SHA-256$"):
        return False
    try:
        _, params, keys = verifier.split("$")
        iterations_text, salt_b64 = params.split(":")
        stored_b64, server_b64 = keys.split(":")
        iterations = int(iterations_text)
        salt = base64.b64decode(salt_b64, validate=True)
        stored_key = base64.b64decode(stored_b64, validate=True)
        server_key = base64.b64decode(server_b64, validate=True)
    except (ValueError, binascii.Error):
        return False
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    expected_stored = hashlib.sha256(client_key).digest()
    expected_server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hmac.compare_digest(expected_stored, stored_key) and hmac.compare_digest(
        expected_server, server_key
    )
