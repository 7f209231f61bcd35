"""How long `inv smoke` takes on the warm local stack (target: under 10 s).

Prints the whole run through `inv` (process start included) and the checks'
own time, next to the bare host probes of the five servers measured in the
same run, so the overhead of using each service's own credentials shows.

    python benchmarks/bench_smoke.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra_lib.manifest import load_manifest
from infra_lib.smoke.checks import SmokeTarget, build_checks
from infra_lib.smoke.runner import COMPONENTS, run_checks
from infra_lib.stack.probes import probe
from infra_lib.stack.services import SERVICE_NAMES
from infra_lib.stack.settings import load_stack_settings

# What `inv smoke` cannot avoid loading: the task runner, the typed settings and
# manifest, and the SDK each check talks to its server with.
_SMOKE_IMPORTS = (
    "invoke",
    "infra_lib.stack.settings",
    "infra_lib.manifest",
    "psycopg",
    "redis",
    "minio",
    "livekit.api",
)


def _import_floor() -> float:
    """Wall time of a fresh interpreter that only imports what the checks need."""
    code = "; ".join(f"import {m}" for m in _SMOKE_IMPORTS)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    settings = load_stack_settings(ROOT / ".env", environ=os.environ)
    target = SmokeTarget(
        settings, load_manifest(ROOT / "infra.toml"), ROOT / "env" / settings.compose_project_name
    )
    best_checks = best_probes = best_cli = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for name in SERVICE_NAMES:
            probe(settings, name)
        best_probes = min(best_probes, time.perf_counter() - start)

        report = run_checks(build_checks(target, components=COMPONENTS))
        if not report.ok:
            print("smoke failed:", [f"{r.name}[{r.service}]: {r.cause}" for r in report.failures])
            return 1
        best_checks = min(best_checks, report.seconds)

        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "invoke", "smoke", "--junit", "reports/bench-smoke.xml"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        best_cli = min(best_cli, time.perf_counter() - start)
    print(
        f"smoke checks={len(report.results)} checks_s={best_checks:.2f} inv_smoke_s={best_cli:.2f}"
    )
    budget = 2 * best_checks + 0.3
    print(
        f"smoke inv_smoke_s={best_cli:.2f} vs 2 x checks + 0.3 s = {budget:.2f}: "
        f"{'within' if best_cli <= budget else 'OVER'} (ratio {best_cli / budget:.2f})"
    )
    print(f"smoke bare_probes_s={best_probes:.2f} (one admin probe per server, sequential)")
    floor = min(_import_floor() for _ in range(3))
    print(
        f"smoke import_floor_s={floor:.2f}: a fresh interpreter importing invoke, the settings "
        "and the five SDKs the checks use, before any check runs"
    )
    print(f"smoke under 10 s: {'yes' if best_cli < 10 else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
