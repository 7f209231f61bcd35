"""A missing optional SDK names the extra that installs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SETTINGS = (
    "from infra_lib.service import ServiceSettings\n"
    "s = ServiceSettings({'DATABASE_URL': 'postgresql://u:p@127.0.0.1:1/d', "
    "'REDIS_URL': 'redis://127.0.0.1:1/0', 'S3_ENDPOINT': 'http://127.0.0.1:1', "
    "'S3_ACCESS_KEY_ID': 'a', 'S3_SECRET_ACCESS_KEY': 'b' * 8, "
    "'LIVEKIT_URL': 'ws://127.0.0.1:1', 'LIVEKIT_API_KEY': 'k', 'LIVEKIT_API_SECRET': 's' * 32})\n"
)

CASES = [
    ("livekit", "livekit", SETTINGS + "s.token_factory()"),
    ("livekit", "livekit", "import infra_lib\ninfra_lib.TokenFactory"),
    ("psycopg", "postgres", SETTINGS + "s.postgres()"),
    ("redis", "redis", SETTINGS + "s.redis()"),
    ("minio", "storage", SETTINGS + "s.presigner()"),
    (
        "botocore",
        "storage",
        "from infra_lib.storage import Presigner, S3Config\n"
        "Presigner(S3Config(endpoint='http://127.0.0.1:1', access_key='a', secret_key='b' * 8),"
        " backend='boto3')",
    ),
    (
        "python_on_whales",
        "stack",
        "from pathlib import Path\n"
        "from infra_lib.stack.compose import Stack, StackPaths\n"
        "from infra_lib.stack.settings import load_stack_settings\n"
        "p = Path('/nonexistent/.env')\n"
        "Stack(load_stack_settings(p, environ={}, require_file=False), "
        "StackPaths.for_root(Path('.'), p)).docker",
    ),
]


@pytest.mark.parametrize(("module", "extra", "code"), CASES, ids=[c[2][-30:] for c in CASES])
def test_a_missing_sdk_is_a_missing_extra_error(module: str, extra: str, code: str) -> None:
    # None in sys.modules makes `import <module>` fail as if it were not installed.
    program = (
        f"import sys\nsys.modules[{module!r}] = None\n"
        "from infra_lib.errors import MissingExtra\n"
        f"try:\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "except MissingExtra as exc:\n"
        "    print(type(exc).__name__, exc.module, exc.extra, exc.exit_code)\n"
        "    print(exc)\n"
        "else:\n"
        "    print('no error')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    first, message = result.stdout.split("\n", 1)
    assert first == f"MissingExtra {module} {extra} 2"
    assert f'pip install "infra-lib[{extra}]"' in message


def test_other_import_errors_pass_through() -> None:
    from infra_lib._extras import optional_sdks

    with pytest.raises(ModuleNotFoundError), optional_sdks("x"):
        import infra_lib_no_such_module  # type: ignore[import-not-found]  # noqa: F401
