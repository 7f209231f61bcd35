"""`inv up` against plain `docker compose up --wait`, cold and warm.

Both run on a throwaway project with its own ports and volumes (removed
afterwards), in the same run, so the ratio is fair on a noisy machine. Cold:
no containers or volumes; warm: the stack already runs healthy. Also `inv
status` against plain `docker compose ps` on the warm stack.

    python benchmarks/bench_up.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
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
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="cold starts of each side")
    args = parser.parse_args()
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
        sides = {
            "compose": [*compose, "up", "-d", "--wait"],
            "inv": [sys.executable, "-m", "invoke", "up", "--no-provision", "--env-file", str(env_file)],
        }  # fmt: skip
        listings = {
            "compose": [*compose, "ps"],
            "inv": [sys.executable, "-m", "invoke", "status", "--env-file", str(env_file)],
        }
        cold: dict[str, list[float]] = {"compose": [], "inv": []}
        warm: dict[str, list[float]] = {"compose": [], "inv": []}
        status: dict[str, list[float]] = {"compose": [], "inv": []}
        try:
            # Alternate which side goes first, so that neither always meets
            # the machine's state the other left.
            for n in range(args.rounds):
                for side in ("compose", "inv") if n % 2 == 0 else ("inv", "compose"):
                    stack.down(volumes=True)
                    cold[side].append(_timed(sides[side], env))
                    # Not timed: after a plain Compose start, the first `inv up`
                    # has no record of the containers yet and runs Compose.
                    _timed(sides["inv"], env)
                    for other in (side, "inv" if side == "compose" else "compose"):
                        warm[other].append(_timed(sides[other], env))
                        status[other].append(_timed(listings[other], env))
        finally:
            stack.down(volumes=True)
    for what, times in (("up cold", cold), ("up warm", warm)):
        raw, ours = min(times["compose"]), min(times["inv"])
        print(
            f"{what}: compose_up_wait_s={raw:.2f} inv_up_s={ours:.2f} ratio={raw / ours:.2f} "
            f"(best of {len(times['inv'])}; medians {statistics.median(times['compose']):.2f} "
            f"and {statistics.median(times['inv']):.2f})"
        )
    raw_ps, inv_status = min(status["compose"]), min(status["inv"])
    print(
        f"status: compose_ps_s={raw_ps:.2f} inv_status_s={inv_status:.2f} "
        f"inv/compose={inv_status / raw_ps:.2f} (target at most 2; best of "
        f"{len(status['inv'])}; medians {statistics.median(status['compose']):.2f} and "
        f"{statistics.median(status['inv']):.2f})"
    )
    print(
        "(ratio = plain compose time / inv time; inv up also probes every protocol from the host,"
        " inv status also checks the data volumes' free space)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
