"""The Python examples of docs/service-repos.md run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from infra_lib.stack.settings import StackSettings

from .conftest import ROOT, run_inv

pytestmark = pytest.mark.integration

GUIDE = ROOT / "docs" / "service-repos.md"
EXAMPLES = re.findall(r"```python\n# example: ([\w-]+)\n(.*?)```", GUIDE.read_text(), re.S)


def test_the_guide_has_examples() -> None:
    assert {service for service, _ in EXAMPLES} == {"board-service", "video-service"}


@pytest.mark.parametrize(("service", "code"), EXAMPLES, ids=[s for s, _ in EXAMPLES])
def test_guide_example_runs(settings: StackSettings, service: str, code: str) -> None:
    provisioned = run_inv("provision", "--service", service)
    assert provisioned.returncode == 0, provisioned.stderr
    env_file = ROOT / "env" / settings.compose_project_name / f"{service}.env"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "SERVICE_ENV_FILE": str(env_file)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
