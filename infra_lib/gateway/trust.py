"""Getting the local CA trusted: where it is, how to add it, and doing so on Debian."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from infra_lib.errors import ConfigError, StackError
from infra_lib.gateway.layer import GatewayPaths

__all__ = ["DEBIAN_CA_DIR", "install_ca", "trust_instructions"]

logger = logging.getLogger(__name__)

#: Where Debian and Ubuntu take local CA certificates from (``*.crt``).
DEBIAN_CA_DIR = Path("/usr/local/share/ca-certificates")


def _installed_name(project: str) -> str:
    return f"infra-lib-{project}.crt"


def trust_instructions(paths: GatewayPaths, project: str) -> list[str]:
    """Lines telling the user where the CA is and how each platform trusts it."""
    ca = paths.ca_cert
    name = _installed_name(project)
    return [
        f"local CA certificate: {ca}",
        "",
        "Debian/Ubuntu (system store, curl, Python's ssl):",
        f"  sudo cp {shlex.quote(str(ca))} {DEBIAN_CA_DIR}/{name} && sudo update-ca-certificates",
        "  (or `inv trust --install` as root)",
        "Fedora/RHEL:",
        f"  sudo cp {shlex.quote(str(ca))} /etc/pki/ca-trust/source/anchors/{name} "
        "&& sudo update-ca-trust",
        "macOS (Keychain; Safari and Chrome use it):",
        "  sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain "
        f"{shlex.quote(str(ca))}",
        "Firefox (its own store): Settings > Privacy & Security > Certificates > View "
        "Certificates > Authorities > Import, then tick 'trust this CA to identify websites'.",
        "One program only, no system change:",
        f"  curl --cacert {shlex.quote(str(ca))} ...;  SSL_CERT_FILE={shlex.quote(str(ca))} "
        "python ...;  NODE_EXTRA_CA_CERTS=... node ...",
    ]


def install_ca(paths: GatewayPaths, project: str, *, target_dir: Path = DEBIAN_CA_DIR) -> Path:
    """Copy the CA certificate into Debian's store and run ``update-ca-certificates``."""
    if not paths.ca_cert.is_file():
        raise ConfigError(f"{paths.ca_cert} does not exist; `inv init` makes the local CA")
    tool = shutil.which("update-ca-certificates")
    if tool is None or not target_dir.parent.is_dir():
        raise ConfigError(
            "update-ca-certificates is not installed: --install works on Debian and Ubuntu "
            "(apt-get install ca-certificates). Elsewhere follow the steps `inv trust` prints."
        )
    if os.geteuid() != 0:
        raise ConfigError(
            f"adding a CA to {target_dir} needs root: run `sudo ./run inv trust --install`, "
            "or the commands `inv trust` prints"
        )
    target_dir.mkdir(mode=0o755, exist_ok=True)
    target = target_dir / _installed_name(project)
    # A CA certificate is public: the store's files are world-readable.
    shutil.copyfile(paths.ca_cert, target)
    target.chmod(0o644)
    command = [tool]
    logger.debug("running %s", shlex.join(command))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(
            f"update-ca-certificates failed ({result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-300:]}"
        )
    return target
