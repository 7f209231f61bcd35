"""Token minting rate of TokenFactory against bare AccessToken, and cold import times.

The factory wraps livekit-api's AccessToken, so its rate should stay within
10% of the bare call (target ratio >= 0.9). Minting is timed in this
process's CPU time, so other processes on a busy machine do not skew it; the
two sides take turns in chunks, with the garbage collector off as timeit
does, and the best round of each counts.
Import times are for a fresh interpreter per module, best of a few runs.
Needs no server.

    python benchmarks/bench_livekit.py [--tokens 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from livekit.api import AccessToken, VideoGrants

from infra_lib.livekit.config import LiveKitConfig
from infra_lib.livekit.tokens import TokenFactory

API_KEY = "APIbenchkey"
API_SECRET = "bench-secret-" + "x" * 32
ROOM = "video/standup-42"
CHUNK = 250
MODULES = ("infra_lib", "infra_lib.livekit", "infra_lib.livekit.tokens", "livekit.api")


def mint_bare(identities: list[str]) -> float:
    start = time.process_time()
    for identity in identities:
        AccessToken(API_KEY, API_SECRET).with_identity(identity).with_grants(
            VideoGrants(room_join=True, room=ROOM)
        ).to_jwt()
    return time.process_time() - start


def mint_factory(factory: TokenFactory, identities: list[str]) -> float:
    start = time.process_time()
    for identity in identities:
        factory.join_token(ROOM, identity)
    return time.process_time() - start


def token_rates(factory: TokenFactory, tokens: int, rounds: int) -> tuple[float, float]:
    """Best tokens/s of each side over ``rounds`` rounds of ``tokens`` tokens.

    Within a round the two sides take turns in chunks of a few hundred
    tokens, so a burst of load from elsewhere lands on both.
    """
    identities = [f"user-{i}" for i in range(tokens)]
    chunks = [identities[i : i + CHUNK] for i in range(0, tokens, CHUNK)]
    best_bare = best_factory = 0.0
    gc.disable()
    try:
        for _ in range(rounds):
            bare_s = factory_s = 0.0
            for chunk in chunks:
                bare_s += mint_bare(chunk)
                factory_s += mint_factory(factory, chunk)
            best_bare = max(best_bare, tokens / bare_s)
            best_factory = max(best_factory, tokens / factory_s)
    finally:
        gc.enable()
    return best_bare, best_factory


def import_seconds(module: str, runs: int) -> float:
    code = (
        "import time\n"
        "start = time.perf_counter()\n"
        f"import {module}\n"
        "print(time.perf_counter() - start)\n"
    )
    best = float("inf")
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        best = min(best, float(result.stdout.strip()))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--import-runs", type=int, default=3)
    args = parser.parse_args()

    config = LiveKitConfig(url="ws://127.0.0.1:7880", api_key=API_KEY, api_secret=API_SECRET)
    factory = TokenFactory(config)
    # One short warm-up of each, so neither pays for first-call caches.
    token_rates(factory, CHUNK, 1)
    bare_best, wrapped_best = token_rates(factory, args.tokens, args.rounds)
    ratio = wrapped_best / bare_best
    print(
        f"tokens/s bare={bare_best:.0f} infra_lib={wrapped_best:.0f} ratio={ratio:.2f} "
        f"(n={args.tokens}, best of {args.rounds}, target ratio >= 0.9)"
    )

    times = {module: import_seconds(module, args.import_runs) for module in MODULES}
    print("import_s " + " ".join(f"{module}={seconds:.3f}" for module, seconds in times.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
