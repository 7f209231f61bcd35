"""The local certificate authority and the gateway's certificate.

``inv init`` (and every ``inv up``/``provision`` with the gateway on) calls
:func:`ensure_tls`: the CA is made once and kept, so a browser or system
that trusts it keeps trusting the gateway; the leaf is made again when the
names it must cover change or when it is within :data:`RENEW_BEFORE` of
expiring. Every key and certificate is written 0600 in a 0700 folder.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infra_lib._extras import optional_sdks
from infra_lib.errors import ConfigError
from infra_lib.gateway.hostnames import is_dns_name, is_ip
from infra_lib.gateway.layer import GatewayPaths, locked
from infra_lib.gateway.routes import stack_hosts
from infra_lib.stack.envfile import write_private_file
from infra_lib.stack.settings import StackSettings

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

__all__ = [
    "CA_LIFETIME",
    "LEAF_LIFETIME",
    "RENEW_BEFORE",
    "TlsResult",
    "certificate_names",
    "ensure_tls",
]

CA_LIFETIME = dt.timedelta(days=3650)
#: Browsers refuse leaf certificates valid for more than 398 days.
LEAF_LIFETIME = dt.timedelta(days=397)
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class TlsResult:
    """What :func:`ensure_tls` did: ``created``, ``renewed`` or ``unchanged`` each."""

    ca: str
    leaf: str
    #: Why the leaf was made again ("" when it was not).
    reason: str = ""


def certificate_names(settings: StackSettings) -> tuple[str, ...]:
    """The DNS names and IP addresses the gateway's certificate covers.

    Sub-names are listed one by one as well as by wildcard: OpenSSL (and
    so Python, curl) does not match ``*.localhost``, a wildcard right under
    a single-label name.
    """
    host = settings.gateway_host
    names = ["localhost", "*.localhost", host, f"*.{host}"]
    names += [f"{v.prefix}.{host}" for v in stack_hosts()]
    public = settings.infra_public_host
    if is_ip(public) or is_dns_name(public):
        names.append(public)
    names += ["127.0.0.1", "::1"]
    return tuple(dict.fromkeys(names))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_key(path: Path, key: EllipticCurvePrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private_file(path, pem.decode("ascii"))


def _make_ca(paths: GatewayPaths, project: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "infra-lib development CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"infra-lib {project} local CA"),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    # Key first: a certificate without its key would be kept and never usable.
    _write_key(paths.ca_key, key)
    write_private_file(paths.ca_cert, cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))


def _san(names: tuple[str, ...]) -> list[x509.GeneralName]:
    from cryptography import x509

    entries: list[x509.GeneralName] = []
    for name in names:
        if is_ip(name):
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        else:
            entries.append(x509.DNSName(name))
    return entries


def _leaf_problem(paths: GatewayPaths, names: tuple[str, ...], ca: x509.Certificate) -> str:
    """Why the leaf must be made (again); "" when it is fine."""
    from cryptography import x509

    if not paths.cert_file.is_file() or not paths.key_file.is_file():
        return "missing"
    try:
        cert = x509.load_pem_x509_certificates(paths.cert_file.read_bytes())[0]
    except ValueError:
        return "unreadable"
    if cert.issuer != ca.subject:
        return "signed by another CA"
    if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return "expires soon"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "no subject alternative names"
    if set(san) != set(_san(names)):
        return "names changed"
    return ""


def _make_leaf(
    paths: GatewayPaths,
    names: tuple[str, ...],
    ca: x509.Certificate,
    ca_key: EllipticCurvePrivateKey,
) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + LEAF_LIFETIME, ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_san(names)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(
        serialization.Encoding.PEM
    )
    _write_key(paths.key_file, key)
    write_private_file(paths.cert_file, chain.decode("ascii"))


def ensure_tls(settings: StackSettings, paths: GatewayPaths) -> TlsResult:
    """Make the CA if it is missing and the leaf if it is missing, stale or expiring."""
    with optional_sdks("the gateway's certificates"):
        # Only to name the missing extra; the helpers import what they use.
        import cryptography.x509  # noqa: F401

    paths.make_dirs()
    with locked(paths.ca_dir / ".lock"):
        return _ensure_tls(settings, paths)


def _ensure_tls(settings: StackSettings, paths: GatewayPaths) -> TlsResult:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_change = "unchanged"
    if not paths.ca_cert.is_file() or not paths.ca_key.is_file():
        if paths.ca_cert.is_file() or paths.ca_key.is_file():
            raise ConfigError(
                f"{paths.ca_dir} holds only half of the local CA (certificate or key); "
                "restore the missing file, or delete the folder to make a new CA (clients "
                "then have to trust the new one: `inv trust`)"
            )
        _make_ca(paths, settings.compose_project_name)
        ca_change = "created"
    try:
        ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    except ValueError as exc:
        raise ConfigError(
            f"the local CA in {paths.ca_dir} cannot be read ({exc}); delete the folder to make "
            "a new one (clients then have to trust it again: `inv trust`)"
        ) from exc
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError(
            f"the local CA key {paths.ca_key} is not an EC key as `inv init` makes them; "
            "delete the folder to make a new CA"
        )
    names = certificate_names(settings)
    problem = _leaf_problem(paths, names, ca)
    if not problem:
        return TlsResult(ca_change, "unchanged")
    _make_leaf(paths, names, ca, ca_key)
    return TlsResult(ca_change, "created" if problem == "missing" else "renewed", problem)
