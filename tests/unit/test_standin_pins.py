"""Image versions are pinned in three places; these checks fail when they drift apart.

The compose files pin the official images users get, ``scripts/offline-images.sh``
pins what the stand-ins are built from, and ``scripts/standins/README.md``
states, for each, what replaces what (and so where the versions differ, such
as Debian's Redis 7.0 for the official 7.4). The settings repeat a few
defaults. A change to one without the others is caught here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra_lib.stack.settings import StackSettings

ROOT = Path(__file__).resolve().parents[2]

_COMPOSE_DEFAULT = re.compile(r"\$\{([A-Z_]+_IMAGE):-([^}]+)\}")
_README_ROW = re.compile(r"^\| `([A-Z_]+_IMAGE)` \| `([^`]+)` \| `([^`]+)`([^|]*)\|", re.MULTILINE)
_READONLY = re.compile(r"^readonly ([A-Z_]+)=(\S+)$", re.MULTILINE)
_TAG = re.compile(r'^\t\[([a-z-]+)\]="([^"]+)"$', re.MULTILINE)


def _compose_defaults() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((ROOT / "compose").glob("*.yaml")):
        for variable, default in _COMPOSE_DEFAULT.findall(path.read_text()):
            assert found.setdefault(variable, default) == default, f"{variable} differs in {path}"
    return found


def _readme_rows() -> dict[str, tuple[str, str, str]]:
    text = (ROOT / "scripts" / "standins" / "README.md").read_text()
    return {var: (tag, official, rest) for var, tag, official, rest in _README_ROW.findall(text)}


def _script_tags() -> list[str]:
    script = (ROOT / "scripts" / "offline-images.sh").read_text()
    pins = dict(_READONLY.findall(script))
    pins["OTELCOL_MANIFEST_SHA"] = "<manifest sha>"
    tags = []
    for _, template in _TAG.findall(script):

        def expand(match: re.Match[str]) -> str:
            name, strip = match[1] or match[3], match[2]
            value = pins[name]
            return value.removeprefix(strip) if strip else value

        tags.append(re.sub(r"\$\{([A-Z_]+)#([^}]*)\}|\$([A-Z_]+)", expand, template))
    return tags


#: Optional extras with no stand-in: pulled by users, never run here.
NOT_BUILT = {"GRAFANA_IMAGE"}


def test_every_compose_image_has_a_row_naming_its_default() -> None:
    rows = _readme_rows()
    for variable, default in _compose_defaults().items():
        if variable in NOT_BUILT:
            assert variable not in rows
            continue
        assert variable in rows, f"scripts/standins/README.md has no row for {variable}"
        tag, official, rest = rows[variable]
        if official.endswith(":") and "same release" in rest:
            # "quay.io/minio/minio: same release": the stand-in's own release.
            assert default == official + tag.split(":", 1)[1].rsplit("-r", 1)[0]
        else:
            assert official == default, (
                f"{variable}: compose uses {default}, scripts/standins/README.md says {official}"
            )


def test_images_without_a_stand_in_are_named_as_such() -> None:
    text = (ROOT / "scripts" / "standins" / "README.md").read_text()
    section = text.split("## Not built here", 1)[1].split("\n## ", 1)[0]
    defaults = _compose_defaults()
    for variable in NOT_BUILT:
        assert f"`{variable}` (`{defaults[variable]}`)" in section, variable


def test_every_stand_in_tag_is_the_one_the_script_builds() -> None:
    built = set(_script_tags())
    for variable, (tag, _, _) in _readme_rows().items():
        assert tag in built, f"{variable}: README tag {tag} is not what offline-images.sh builds"


@pytest.mark.parametrize(
    ("field", "variable"),
    [
        (name, name.upper())
        for name, info in StackSettings.model_fields.items()
        if name.endswith("_image") and info.default is not None
    ],
)
def test_settings_defaults_match_compose(field: str, variable: str) -> None:
    assert StackSettings.model_fields[field].default == _compose_defaults()[variable]
