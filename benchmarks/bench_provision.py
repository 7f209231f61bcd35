"""Provision 100 services cold, then again with nothing changed.

The re-run reads the catalog in a few queries and diffs it, so it should be
at least 10x faster than the cold run that creates 100 roles and databases.
Runs against the stack of this checkout (.env); everything it creates is
dropped at the end.

    python benchmarks/bench_provision.py [--services 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra_lib.manifest import parse_manifest
from infra_lib.postgres.config import PostgresConfig
from infra_lib.postgres.provisioner import PostgresProvisioner
from infra_lib.provisioning import provision
from infra_lib.stack.settings import load_stack_settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=100)
    args = parser.parse_args()

    settings = load_stack_settings(ROOT / ".env", environ=os.environ)
    admin = PostgresConfig.from_stack(settings)
    tag = uuid.uuid4().hex[:6]
    services = {
        f"bench-{tag}-{i}": {"postgres": {"database": f"b{tag}_{i}_db", "role": f"b{tag}_{i}_user"}}
        for i in range(args.services)
    }
    manifest = parse_manifest({"services": services}, path="<bench>")
    pg = PostgresProvisioner(admin)
    try:
        with tempfile.TemporaryDirectory() as env_dir:
            start = time.perf_counter()
            cold = provision(manifest, env_dir=Path(env_dir), postgres=admin, redis=None)
            cold_s = time.perf_counter() - start

            start = time.perf_counter()
            warm = provision(manifest, env_dir=Path(env_dir), postgres=admin, redis=None)
            warm_s = time.perf_counter() - start
    finally:
        for body in services.values():
            pg.drop_database(body["postgres"]["database"], force=True)
            pg.drop_role(body["postgres"]["role"])

    created = sum(r.change == "create" for r in cold.rows)
    changed_again = sum(r.change != "unchanged" for r in warm.rows)
    print(f"provision services={args.services} cold_s={cold_s:.2f} objects_created={created}")
    print(
        f"provision services={args.services} rerun_s={warm_s:.3f} objects_changed={changed_again}"
    )
    print(f"provision speedup cold/rerun={cold_s / warm_s:.1f}x (target >= 10x)")
    return 0 if changed_again == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
