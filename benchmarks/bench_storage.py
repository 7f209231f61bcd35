"""Presigned PUT URLs per second: the bare minio SDK call against Presigner.put_url.

Presigning is local (no request reaches MinIO), so this measures the
wrapper's own cost: the key, content-type and expiry checks on top of the
SDK's signing. Also prints the cold import time of ``infra_lib.storage.presign``
and of building the first Presigner (which imports minio).

Reads the stack's ``.env`` from the repository root, as the tests do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra_lib.stack.settings import load_stack_settings
from infra_lib.storage.config import S3Config
from infra_lib.storage.presign import Presigner

ROUNDS = 3
PER_ROUND = 2_000
BUCKET = "bench-files"
EXPIRES = timedelta(minutes=15)


def rate(sign: object, keys: list[str]) -> float:
    started = time.perf_counter()
    for key in keys:
        sign(key)  # type: ignore[operator]
    return len(keys) / (time.perf_counter() - started)


def cold_import_seconds(statement: str) -> float:
    code = (
        "import time\n"
        "started = time.perf_counter()\n"
        f"{statement}\n"
        "print(time.perf_counter() - started)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return float(result.stdout.strip())


def main() -> int:
    from minio import Minio

    settings = load_stack_settings(ROOT / ".env", environ=os.environ)
    config = S3Config.from_stack(settings)
    url = urlsplit(config.public_endpoint)
    # The same region as the wrapper, so neither side asks the server for it.
    bare = Minio(
        url.netloc,
        access_key=config.access_key,
        secret_key=config.secret_key,
        secure=url.scheme == "https",
        region=config.region,
    )
    presigner = Presigner(config)
    keys = [f"profiles/{n}/avatar.jpg" for n in range(PER_ROUND)]

    def bare_put(key: str) -> str:
        return bare.presigned_put_object(BUCKET, key, EXPIRES)

    def wrapped_put(key: str) -> str:
        return presigner.put_url(BUCKET, key, content_type="image/jpeg", expires=EXPIRES)

    # Warm both paths, then interleave rounds so drift hits both alike.
    rate(bare_put, keys[:200])
    rate(wrapped_put, keys[:200])
    bare_rates, wrapped_rates = [], []
    for _ in range(ROUNDS):
        bare_rates.append(rate(bare_put, keys))
        wrapped_rates.append(rate(wrapped_put, keys))
    best_bare, best_wrapped = max(bare_rates), max(wrapped_rates)
    print(
        f"presigned_put/s bare={best_bare:,.0f} infra_lib={best_wrapped:,.0f} "
        f"ratio={best_wrapped / best_bare:.3f}"
    )

    module = cold_import_seconds("import infra_lib.storage.presign")
    first = cold_import_seconds(
        "import infra_lib.storage.presign as p, infra_lib.storage.config as c\n"
        "p.Presigner(c.S3Config(endpoint='http://127.0.0.1:9000', access_key='a', "
        "secret_key='b'))"
    )
    print(f"cold_import infra_lib.storage.presign={module:.3f}s first_presigner={first:.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
