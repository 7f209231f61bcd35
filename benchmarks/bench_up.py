"""`inv up` against plain `docker compose up --wait`, cold and warm.

Both run on a throwaway project with its own ports and volumes (removed
afterwards), in the same run, so the ratio is fair on a noisy machine. Cold:
no containers or volumes; warm: the stack already runs healthy. Also `inv
status` against plain `docker compose ps` on the warm stack.

    python benchmarks/bench_up.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra_lib.stack.compose import Stack, StackPaths
from infra_lib.stack.envfile import write_env_file
from infra_lib.stack.settings import StackSettings, load_stack_settings

PORT_KEYS = [
    "POSTGRES_PORT",
    "REDIS_PORT",
    "MINIO_API_PORT",
    "MINIO_CONSOLE_PORT",
    "LIVEKIT_HTTP_PORT",
    "LIVEKIT_TCP_PORT",
    "TURN_PORT",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environ() -> dict[str, str]:
    keys = {name.upper() for name in StackSettings.model_fields}
    return {k: v for k, v in os.environ.items() if k not in keys or k.endswith("_IMAGE")}


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} ... failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - start


def main() -> int:
    env = _environ()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {k: str(_free_port()) for k in PORT_KEYS}
        overrides.update(
            COMPOSE_PROJECT_NAME=f"bench-up-{uuid.uuid4().hex[:6]}",
            LIVEKIT_RTC_PORT_START="53000",
            LIVEKIT_RTC_PORT_END="53004",
            TURN_RELAY_PORT_START="53100",
            TURN_RELAY_PORT_END="53104",
        )
        env_file = write_env_file(
            ROOT / ".env.example", Path(tmp) / ".env", overrides=overrides
        ).path
        stack = Stack(
            load_stack_settings(env_file, environ=env), StackPaths.for_root(ROOT, env_file)
        )
        compose = [
            "docker", "compose", "--project-name", stack.project_name, "--env-file", str(env_file),
            "--file", str(stack.paths.compose_file),
        ]  # fmt: skip
        inv = [sys.executable, "-m", "invoke", "up", "--no-provision", "--env-file", str(env_file)]
        try:
            raw_cold = _timed([*compose, "up", "-d", "--wait"], env)
            raw_warm = _timed([*compose, "up", "-d", "--wait"], env)
            stack.down(volumes=True)
            inv_cold = _timed(inv, env)
            inv_warm = min(_timed(inv, env) for _ in range(3))
            raw_warm = min(
                raw_warm, *(_timed([*compose, "up", "-d", "--wait"], env) for _ in range(2))
            )
            status = [sys.executable, "-m", "invoke", "status", "--env-file", str(env_file)]
            raw_ps = min(_timed([*compose, "ps"], env) for _ in range(3))
            inv_status = min(_timed(status, env) for _ in range(3))
        finally:
            stack.down(volumes=True)
    print(
        f"up cold: compose_up_wait_s={raw_cold:.2f} inv_up_s={inv_cold:.2f} ratio={raw_cold / inv_cold:.2f}"
    )
    print(
        f"up warm: compose_up_wait_s={raw_warm:.2f} inv_up_s={inv_warm:.2f} ratio={raw_warm / inv_warm:.2f}"
    )
    print(
        f"status: compose_ps_s={raw_ps:.2f} inv_status_s={inv_status:.2f} "
        f"inv/compose={inv_status / raw_ps:.2f} (target at most 2)"
    )
    print(
        "(ratio = plain compose time / inv time; inv up also probes every protocol from the host,"
        " inv status also checks the data volumes' free space; warm and status: best of 3)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
