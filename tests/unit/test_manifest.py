"""Manifest validation: precise errors naming file, service and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra_lib.errors import ConfigError, ManifestError
from infra_lib.manifest import load_manifest, parse_manifest
from infra_lib.names import validate_pg_identifier, validate_service_name

ROOT = Path(__file__).resolve().parents[2]


def test_reference_manifest_is_the_reference_team() -> None:
    manifest = load_manifest(ROOT / "infra.toml")
    assert [s.name for s in manifest] == [
        "user-service",
        "auth-service",
        "board-service",
        "chat-service",
        "noti-service",
        "storage-service",
        "video-service",
    ]
    board = manifest.service("board-service")
    assert board.postgres is not None and board.postgres.database == "board_db"
    assert board.redis is not None and board.redis.db == 1
    assert manifest.service("auth-service").postgres is None
    assert manifest.project.bucket_name == "collab-dev-files"


def _error(data: dict[str, object]) -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifest(data, path="infra.toml")
    return str(info.value)


def test_unknown_key_names_service_and_field() -> None:
    message = _error({"services": {"a": {"postgres": {"database": "a", "role": "a", "x": 1}}}})
    assert "infra.toml: service 'a', field 'postgres.x'" in message


def test_unknown_top_level_key() -> None:
    assert "unknown top-level key 'servces'" in _error({"servces": {}})


def test_invalid_identifier_is_rejected_with_reason() -> None:
    message = _error({"services": {"a": {"postgres": {"database": "A-db", "role": "a"}}}})
    assert "field 'postgres.database'" in message
    assert "lowercase" in message


def test_redis_db_claimed_twice() -> None:
    message = _error({"services": {"a": {"redis": {"db": 1}}, "b": {"redis": {"db": 1}}}})
    assert "service 'b', field 'redis.db'" in message
    assert "already claimed by service 'a'" in message


def test_redis_db_out_of_range() -> None:
    assert "field 'redis.db'" in _error({"services": {"a": {"redis": {"db": -1}}}})


def test_duplicate_database_and_role() -> None:
    pg = {"database": "same", "role": "same_user"}
    message = _error({"services": {"a": {"postgres": pg}, "b": {"postgres": pg}}})
    assert "database 'same' is already claimed" in message
    assert "role 'same_user' is already claimed" in message


def test_duplicate_service_in_toml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "infra.toml"
    path.write_text("[services.a]\n[services.a]\n")
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_manifest(path)


def test_bad_service_name() -> None:
    assert "invalid service name 'Bad Name'" in _error({"services": {"Bad Name": {}}})


def test_storage_prefix_rules() -> None:
    assert "no leading '/'" in _error({"services": {"a": {"storage": {"prefixes": ["../x/"]}}}})
    overlap = {"a": {"storage": {"prefixes": ["x/"]}}, "b": {"storage": {"prefixes": ["x/y/"]}}}
    assert "overlaps 'x/'" in _error({"services": overlap})


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(tmp_path / "infra.toml")


def test_unknown_service_lookup() -> None:
    manifest = parse_manifest({"services": {"a": {}}})
    with pytest.raises(ConfigError, match="known: a"):
        manifest.service("b")


HOSTILE = [
    'x"; DROP DATABASE postgres; --',
    "a'b",
    "semi;colon",
    "ünïcode",
    "with space",
    "UPPER",
    "1starts_with_digit",
    "pg_reserved",
    "a" * 64,
    "",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_identifiers_are_rejected(name: str) -> None:
    with pytest.raises(ConfigError):
        validate_pg_identifier(name)


@given(st.text(max_size=80))
def test_any_accepted_identifier_is_plain(name: str) -> None:
    try:
        validate_pg_identifier(name)
    except ConfigError:
        return
    assert len(name.encode()) <= 63
    assert name.isascii() and name == name.lower()
    assert all(ch.isalnum() or ch == "_" for ch in name)
    assert not name[0].isdigit()


@given(st.text(max_size=80))
def test_any_accepted_service_name_is_plain(name: str) -> None:
    try:
        validate_service_name(name)
    except ConfigError:
        return
    assert name.isascii() and all(ch.isalnum() or ch in "-_" for ch in name)


@pytest.mark.parametrize("prefix", ["b*/", "board?/", "${aws:username}/"])
def test_a_wildcard_prefix_is_refused_at_load_naming_service_and_field(
    tmp_path: Path, prefix: str
) -> None:
    path = tmp_path / "infra.toml"
    path.write_text(
        '[services.board-service]\nstorage = { prefixes = ["boards/"] }\n\n'
        f"[services.evil-service]\nstorage = {{ prefixes = ['{prefix}'] }}\n"
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    message = str(info.value)
    assert f"{path}: service 'evil-service', field 'storage.prefixes'" in message
    assert repr(prefix) in message
    assert "board-service" not in message


def test_a_wildcard_public_read_prefix_is_refused_too() -> None:
    message = _error(
        {"services": {"a": {"storage": {"prefixes": ["a/"], "public_read": ["a/*/"]}}}}
    )
    assert "service 'a', field 'storage.public_read'" in message


def test_redis_key_prefix_defaults_to_the_service_name() -> None:
    manifest = parse_manifest({"services": {"board-service": {"redis": {"db": 1}}}})
    needs = manifest.service("board-service").redis
    assert needs is not None and needs.prefix_for("board-service") == "board-service:"
    named = parse_manifest({"services": {"board-service": {"redis": {"key_prefix": "board:"}}}})
    needs = named.service("board-service").redis
    assert needs is not None and needs.prefix_for("board-service") == "board:"


@pytest.mark.parametrize("prefix", ["board", "board:*", "bo?rd:", "b[a]:", "a b:", ":", "", "é:"])
def test_redis_key_prefix_must_be_plain_segments(prefix: str) -> None:
    message = _error({"services": {"a": {"redis": {"key_prefix": prefix}}}})
    assert "service 'a', field 'redis.key_prefix'" in message


@pytest.mark.parametrize(
    "services",
    [
        {"a": {"redis": {"key_prefix": "infra:"}}},
        {"a": {"redis": {"key_prefix": "infra:board:"}}},
        # A default prefix is checked too.
        {"infra": {"redis": {}}},
    ],
)
def test_redis_key_prefix_must_stay_out_of_the_reserved_namespace(
    services: dict[str, object],
) -> None:
    message = _error({"services": services})
    assert "field 'redis.key_prefix'" in message
    assert "'infra:'" in message


def test_redis_key_prefixes_must_not_overlap() -> None:
    message = _error(
        {
            "services": {
                "a": {"redis": {"key_prefix": "board:"}},
                "b": {"redis": {"key_prefix": "board:cache:"}},
                "board": {"redis": {}},
            }
        }
    )
    assert "service 'b', field 'redis.key_prefix': 'board:cache:' overlaps 'board:'" in message
    assert "service 'board', field 'redis.key_prefix': 'board:' overlaps 'board:'" in message
    # Prefixes that merely share letters do not overlap: "board:*" never matches "boards:x".
    parse_manifest(
        {
            "services": {
                "a": {"redis": {"key_prefix": "board:"}},
                "b": {"redis": {"key_prefix": "boards:"}},
            }
        }
    )
