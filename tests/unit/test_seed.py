"""Seed files: SQL split into statements with their lines, Redis seed files checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra_lib.errors import ManifestError, SeedError
from infra_lib.manifest import parse_manifest
from infra_lib.redis.keys import prefix_pattern
from infra_lib.seed import read_redis_seed, seed_sql_files, split_sql


def test_statements_keep_their_line_and_quoted_semicolons() -> None:
    text = (
        "-- header; not a statement\n"
        "CREATE TABLE t (a text);\n"
        "\n"
        "INSERT INTO t VALUES ('a;b'), ('it''s; fine');\n"
        "/* a; comment */ CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$\n"
        "  LANGUAGE sql;\n"
        'SELECT "odd;name" FROM t'
    )
    found = [(line, stmt.split()[0]) for line, _, stmt in split_sql(text)]
    assert found == [(2, "CREATE"), (4, "INSERT"), (5, "CREATE"), (7, "SELECT")]
    assert "SELECT 1; $body$" in split_sql(text)[2][2]


def test_a_comment_only_tail_is_no_statement() -> None:
    assert [s for _, _, s in split_sql("SELECT 1;\n-- done\n")] == ["SELECT 1"]


def test_sql_files_come_in_name_order_once_and_a_pattern_must_match(tmp_path: Path) -> None:
    for name in ("20-rows.sql", "10-schema.sql", "notes.txt"):
        (tmp_path / name).write_text("SELECT 1;")
    files = seed_sql_files(tmp_path, ["*.sql", "10-schema.sql"])
    assert [p.name for p in files] == ["10-schema.sql", "20-rows.sql"]
    with pytest.raises(SeedError, match=r"'missing/\*\.sql' matches no file"):
        seed_sql_files(tmp_path, ["missing/*.sql"])


def test_redis_seed_short_and_long_forms(tmp_path: Path) -> None:
    path = tmp_path / "redis.json"
    path.write_text(
        '{"b:name": "x", "b:n": 3, "b:list": ["1", "2"],\n'
        ' "b:h": {"type": "hash", "value": {"f": "v"}, "ttl": 60},\n'
        ' "b:z": {"type": "zset", "value": {"m": 1.5}}}'
    )
    keys = {k.key: (k.type, k.value, k.ttl) for k in read_redis_seed(path, "b:")}
    assert keys == {
        "b:name": ("string", "x", None),
        "b:n": ("string", "3", None),
        "b:list": ("list", ["1", "2"], None),
        "b:h": ("hash", {"f": "v"}, 60),
        "b:z": ("zset", {"m": 1.5}, None),
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1,\n "b": }', r"redis.json:2: not valid JSON"),
        ('["b:x"]', "must hold a JSON object"),
        ('{"b:ok": "1",\n "other:x": "1"}', r"redis.json:2: key 'other:x' does not start"),
        ('{"b:x": {"type": "stream", "value": []}}', "type 'stream' is not one of"),
        ('{"b:x": {"type": "hash", "value": ["a"]}}', "a hash needs a non-empty object"),
        ('{"b:x": {"value": "1", "ttl": -5}}', "ttl must be whole seconds"),
        ('{"b:x": true}', "give a string, an array"),
    ],
)
def test_a_bad_redis_seed_names_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "redis.json"
    path.write_text(text)
    with pytest.raises(SeedError, match=message):
        read_redis_seed(path, "b:")


def _service(**body: object) -> dict[str, object]:
    return {"services": {"a-service": body}}


def test_the_manifest_checks_seed_paths_and_their_stores() -> None:
    pg = {"database": "a_db", "role": "a_user"}
    seed = parse_manifest(_service(postgres=pg, seed={"postgres": "seeds/*.sql"})).services[0]
    assert seed.seed is not None and seed.seed.postgres == ("seeds/*.sql",)
    with pytest.raises(ManifestError, match=r"seed\.redis is given but the service has no redis"):
        parse_manifest(_service(seed={"redis": "r.json"}))
    with pytest.raises(ManifestError, match=r"field 'seed\.postgres'.*relative"):
        parse_manifest(_service(postgres=pg, seed={"postgres": ["/etc/passwd"]}))
    with pytest.raises(ManifestError, match=r"field 'seed\.storage'.*no '\.\.'"):
        parse_manifest(_service(storage={"prefixes": ["a/"]}, seed={"storage": "../files"}))


def test_a_redis_prefix_with_glob_characters_matches_only_itself() -> None:
    assert prefix_pattern("board:") == "board:*"
    assert prefix_pattern("a*[b]?:") == "a\\*\\[b\\]\\?:*"
