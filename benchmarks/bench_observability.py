"""What the observability layer costs: `inv up` time, idle memory, disk growth, log ingestion.

On a throwaway project with its own ports and volumes (removed afterwards),
all in one run so the comparisons are fair on a noisy machine:

- `inv up` of the core stack, cold, against `inv up --with observability`,
  cold (both with provisioning): the time the layer adds;
- the layer's idle memory (RSS of each of its containers, `docker stats`)
  next to the core stack's;
- the growth of its volumes over a window (default 120 s), per hour;
- log lines per second from a container's stdout, through the collector,
  into VictoriaLogs, against posting the same lines straight to
  VictoriaLogs' JSON-lines API (ratio = collector / direct).

    python benchmarks/bench_observability.py [--window SECONDS] [--lines N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_up import PORT_KEYS, _environ, _free_port, _timed
from infra_lib.observability.logstore import LogStore
from infra_lib.stack.compose import Stack, StackPaths
from infra_lib.stack.envfile import write_env_file
from infra_lib.stack.services import PROFILE_SERVICES
from infra_lib.stack.settings import load_stack_settings

LAYER_PORT_KEYS = [
    "METRICS_PORT",
    "LOGS_PORT",
    "OTLP_GRPC_PORT",
    "OTLP_HTTP_PORT",
    "TRACES_UI_PORT",
]
LAYER_SERVICES = [spec.name for spec in PROFILE_SERVICES["observability"]]
LAYER_VOLUMES = ["metrics-data", "logs-data", "traces-data"]


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f}"


def _rss(stack: Stack) -> dict[str, float]:
    """Memory in use of each running container of the project, by compose service."""
    found: dict[str, float] = {}
    prefix = f"{stack.project_name}-"
    for stats in stack.docker.stats():
        if stats.container_name.startswith(prefix):
            name = stats.container_name.removeprefix(prefix).rsplit("-", 1)[0]
            found[name] = float(stats.memory_used)
    return found


def _volume_bytes(stack: Stack, volume: str) -> int:
    """Bytes on disk (allocated blocks) under a volume of the project."""
    mountpoint = stack.docker.volume.inspect(f"{stack.project_name}_{volume}").mountpoint
    total = 0
    for folder, _, files in os.walk(mountpoint):
        for name in files:
            try:
                total += (Path(folder) / name).lstat().st_blocks * 512
            except FileNotFoundError:  # merged or rotated away meanwhile
                continue
    return total


def _count(logs: LogStore, marker: str) -> int:
    rows = logs.query(f'"{marker}" | stats count() n', limit=1)
    return int(rows[0]["n"]) if rows else 0


def _wait_count(logs: LogStore, marker: str, lines: int, start: float, timeout: float) -> float:
    while _count(logs, marker) < lines:
        if time.perf_counter() - start > timeout:
            raise SystemExit(f"only {_count(logs, marker)} of {lines} lines of {marker} arrived")
        time.sleep(0.1)
    return time.perf_counter() - start


def _through_collector(stack: Stack, logs: LogStore, lines: int) -> float:
    marker = f"bench-{uuid.uuid4().hex[:10]}"
    # Any image with a shell: the project's Redis server image.
    image = stack.docker.container.inspect(f"{stack.project_name}-redis-1").config.image
    script = f'i=0; while [ $i -lt {lines} ]; do echo "{marker} line $i"; i=$((i+1)); done'
    start = time.perf_counter()
    stack.docker.run(image, ["-c", script], entrypoint="sh", remove=True)
    return _wait_count(logs, marker, lines, start, timeout=300)


def _direct(stack: Stack, logs: LogStore, lines: int) -> float:
    marker = f"bench-{uuid.uuid4().hex[:10]}"
    body = "".join(
        json.dumps({"_msg": f"{marker} line {i}", "bench": "direct"}) + "\n" for i in range(lines)
    ).encode()
    url = f"{logs.base_url}/insert/jsonline?_stream_fields=bench"
    start = time.perf_counter()
    # Without this type the body is taken for a form and nothing is stored.
    headers = {"Content-Type": "application/stream+json"}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        response.read()
    return _wait_count(logs, marker, lines, start, timeout=300)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=120.0, help="disk growth window, seconds")
    parser.add_argument("--lines", type=int, default=20000, help="log lines per ingestion run")
    args = parser.parse_args()
    env = _environ()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {k: str(_free_port()) for k in [*PORT_KEYS, *LAYER_PORT_KEYS]}
        overrides.update(
            COMPOSE_PROJECT_NAME=f"bench-obs-{uuid.uuid4().hex[:6]}",
            LIVEKIT_RTC_PORT_START="53200",
            LIVEKIT_RTC_PORT_END="53204",
            TURN_RELAY_PORT_START="53300",
            TURN_RELAY_PORT_END="53304",
        )
        env_file = write_env_file(
            ROOT / ".env.example", Path(tmp) / ".env", overrides=overrides
        ).path
        inv = [sys.executable, "-m", "invoke", "up", "--env-file", str(env_file)]
        stack = Stack(
            load_stack_settings(env_file, environ=env), StackPaths.for_root(ROOT, env_file)
        )
        try:
            core_cold = _timed(inv, env)
            stack.down(volumes=True)
            layer_cold = _timed([*inv, "--with", "observability"], env)
            layer_warm = _timed(inv, env)
            settings = load_stack_settings(env_file, environ=env)
            stack = Stack(
                settings,
                StackPaths.for_root(ROOT, env_file),
                extra_env_files=[
                    Path(tmp)
                    / "env"
                    / settings.compose_project_name
                    / "observability"
                    / "secrets.env"
                ],
            )
            logs = LogStore.from_stack(settings)
            time.sleep(30)  # let start-up settle before measuring idle
            rss = _rss(stack)
            before = {v: _volume_bytes(stack, v) for v in LAYER_VOLUMES}
            time.sleep(args.window)
            after = {v: _volume_bytes(stack, v) for v in LAYER_VOLUMES}
            direct = _direct(stack, logs, args.lines)
            collector = _through_collector(stack, logs, args.lines)
        finally:
            stack.down(volumes=True)
    layer_rss = sum(v for k, v in rss.items() if k in LAYER_SERVICES)
    core_rss = sum(v for k, v in rss.items() if k not in LAYER_SERVICES)
    print(
        f"inv up cold: core_s={core_cold:.2f} with_observability_s={layer_cold:.2f} "
        f"added_s={layer_cold - core_cold:.2f} ratio={core_cold / layer_cold:.2f}; "
        f"warm with the layer: {layer_warm:.2f} s"
    )
    print(
        f"idle memory: layer_mib={_mib(layer_rss)} core_mib={_mib(core_rss)} ("
        + ", ".join(f"{k} {_mib(v)}" for k, v in sorted(rss.items()) if k in LAYER_SERVICES)
        + ")"
    )
    per_hour = {v: (after[v] - before[v]) * 3600 / args.window for v in LAYER_VOLUMES}
    print(
        f"disk growth per hour (over {args.window:.0f} s): "
        + ", ".join(f"{v} {_mib(b)} MiB" for v, b in per_hour.items())
        + f"; total {_mib(sum(per_hour.values()))} MiB/h"
    )
    print(
        f"log ingestion of {args.lines} lines: through_collector_lines_s={args.lines / collector:.0f} "
        f"direct_api_lines_s={args.lines / direct:.0f} ratio={direct / collector:.2f}"
    )
    print("(ratios: baseline time / measured time; 1.0 = as fast as the baseline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
