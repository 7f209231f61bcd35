"""LiveKitConfig and TokenFactory: claims, validation, lifetimes, import cost; no server needed."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from livekit.api import TokenVerifier

from infra_lib.errors import ConfigError
from infra_lib.livekit import JoinToken, LiveKitConfig, TokenFactory
from infra_lib.livekit import tokens as tokens_module
from infra_lib.livekit.config import MAX_NAME_LENGTH
from infra_lib.stack.settings import load_stack_settings

KEY = "APItestkey"
SECRET = "s" * 24 + "-unit-test-secret"


@pytest.fixture
def config() -> LiveKitConfig:
    return LiveKitConfig(url="ws://127.0.0.1:7880", api_key=KEY, api_secret=SECRET)


@pytest.fixture
def factory(config: LiveKitConfig) -> TokenFactory:
    return TokenFactory(config)


def claims_of(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"], issuer=KEY)
    return decoded


# --- config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "api_url"),
    [
        ("ws://127.0.0.1:7880", "http://127.0.0.1:7880"),
        ("wss://demo.livekit.cloud", "https://demo.livekit.cloud"),
        ("wss://proxy.example/livekit/", "https://proxy.example/livekit"),
    ],
)
def test_api_url_is_derived_from_the_client_url(url: str, api_url: str) -> None:
    assert LiveKitConfig(url=url, api_key=KEY, api_secret=SECRET).api_url == api_url


def test_an_explicit_api_url_is_kept() -> None:
    config = LiveKitConfig(
        url="wss://video.example.com", api_url="http://livekit:7880", api_key=KEY, api_secret=SECRET
    )
    assert config.api_url == "http://livekit:7880"
    assert config.url == "wss://video.example.com"


@pytest.mark.parametrize("url", ["http://127.0.0.1:7880", "127.0.0.1:7880", "ws://", ""])
def test_client_url_must_be_websocket(url: str) -> None:
    with pytest.raises(ConfigError, match=r"ws://"):
        LiveKitConfig(url=url, api_key=KEY, api_secret=SECRET)


def test_api_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match=r"http://"):
        LiveKitConfig(url="ws://h:1", api_url="ws://h:1", api_key=KEY, api_secret=SECRET)


@pytest.mark.parametrize("key", ["", "   "])
def test_api_key_must_be_set(key: str) -> None:
    with pytest.raises(ConfigError, match="LIVEKIT_API_KEY"):
        LiveKitConfig(url="ws://h:1", api_key=key, api_secret=SECRET)


def test_short_secret_is_refused_like_the_server_does() -> None:
    with pytest.raises(ConfigError, match=r"31 characters.*allow_short_secret"):
        LiveKitConfig(url="ws://h:1", api_key=KEY, api_secret="x" * 31)
    LiveKitConfig(url="ws://h:1", api_key=KEY, api_secret="x" * 32)


def test_short_secret_is_allowed_for_dev_servers_but_not_an_empty_one() -> None:
    config = LiveKitConfig(
        url="ws://h:1", api_key="devkey", api_secret="secret", allow_short_secret=True
    )
    assert config.api_secret == "secret"
    with pytest.raises(ConfigError, match="LIVEKIT_API_SECRET"):
        LiveKitConfig(url="ws://h:1", api_key=KEY, api_secret="", allow_short_secret=True)


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="timeout"):
        LiveKitConfig(url="ws://h:1", api_key=KEY, api_secret=SECRET, timeout=0)


def test_secret_does_not_show_in_repr(config: LiveKitConfig) -> None:
    assert SECRET not in repr(config)
    assert KEY in repr(config)


def test_from_stack(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        f"INFRA_PUBLIC_HOST=10.0.0.5\nLIVEKIT_HTTP_PORT=7999\n"
        f"LIVEKIT_API_KEY={KEY}\nLIVEKIT_API_SECRET={SECRET}\n"
    )
    config = LiveKitConfig.from_stack(load_stack_settings(env, environ={}))
    assert config.url == "ws://10.0.0.5:7999"
    assert config.api_url == "http://10.0.0.5:7999"
    assert (config.api_key, config.api_secret) == (KEY, SECRET)


def test_from_stack_brackets_an_ipv6_host(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(f"INFRA_PUBLIC_HOST=::1\nLIVEKIT_API_KEY={KEY}\nLIVEKIT_API_SECRET={SECRET}\n")
    assert LiveKitConfig.from_stack(load_stack_settings(env, environ={})).url == "ws://[::1]:7880"


@pytest.mark.parametrize(
    ("text", "missing"),
    [(f"LIVEKIT_API_SECRET={SECRET}\n", "LIVEKIT_API_KEY"), (f"LIVEKIT_API_KEY={KEY}\n", "SECRET")],
)
def test_from_stack_without_the_key_pair_says_to_run_init(
    tmp_path: Path, text: str, missing: str
) -> None:
    env = tmp_path / ".env"
    env.write_text(text)
    with pytest.raises(ConfigError, match=rf"{missing}.*inv init"):
        LiveKitConfig.from_stack(load_stack_settings(env, environ={}))


# --- join tokens ----------------------------------------------------------------------


def test_join_token_claims(factory: TokenFactory) -> None:
    minted = factory.join_token("standup", "user-42")
    claims = claims_of(minted.token)
    assert claims["sub"] == "user-42"
    assert claims["iss"] == KEY
    assert claims["video"] == {
        "roomJoin": True,
        "room": "standup",
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": True,
    }
    assert claims["exp"] - claims["nbf"] == 3600
    assert "name" not in claims
    assert "metadata" not in claims
    assert "attributes" not in claims


def test_join_token_carries_what_the_client_needs(
    factory: TokenFactory, config: LiveKitConfig
) -> None:
    minted = factory.join_token("standup", "user-42")
    assert isinstance(minted, JoinToken)
    assert (minted.url, minted.room, minted.identity) == (config.url, "standup", "user-42")
    assert minted.expires_at == datetime.fromtimestamp(claims_of(minted.token)["exp"], UTC)
    assert minted.expires_at.tzinfo is UTC
    assert minted.token not in repr(minted)


def test_expiry_is_exact_when_the_clock_ticks_during_signing(
    factory: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every clock read lands in a new second, so the factory must read exp
    # from the token rather than compute it.
    ticks = iter(range(1_000_000_000, 1_000_000_100))
    monkeypatch.setattr(tokens_module, "time", lambda: float(next(ticks)))
    minted = factory.join_token("standup", "user-42")
    assert minted.expires_at == datetime.fromtimestamp(claims_of(minted.token)["exp"], UTC)


def test_expiry_follows_each_tokens_own_ttl(factory: TokenFactory) -> None:
    for ttl in (timedelta(minutes=5), None, timedelta(minutes=5), timedelta(hours=2)):
        minted = factory.join_token("standup", "user-42", ttl=ttl)
        exp = claims_of(minted.token)["exp"]
        assert minted.expires_at == datetime.fromtimestamp(exp, UTC)


def test_join_token_profile_claims(factory: TokenFactory) -> None:
    minted = factory.join_token(
        "standup",
        "user-42",
        name="Ada Lovelace",
        metadata=json.dumps({"avatar": "profiles/42/avatar.jpg"}),
        attributes={"role": "host", "team": "core"},
    )
    claims = claims_of(minted.token)
    assert claims["name"] == "Ada Lovelace"
    assert json.loads(claims["metadata"]) == {"avatar": "profiles/42/avatar.jpg"}
    assert claims["attributes"] == {"role": "host", "team": "core"}


def test_join_token_permissions(factory: TokenFactory) -> None:
    minted = factory.join_token(
        "standup",
        "recorder",
        can_publish=False,
        can_subscribe=True,
        can_publish_data=False,
        hidden=True,
        room_admin=True,
    )
    video = claims_of(minted.token)["video"]
    assert video["canPublish"] is False
    assert video["canSubscribe"] is True
    assert video["canPublishData"] is False
    assert video["hidden"] is True
    assert video["roomAdmin"] is True


def test_publish_sources_are_limited_and_deduplicated(factory: TokenFactory) -> None:
    minted = factory.join_token(
        "standup", "user-42", can_publish_sources=["microphone", "camera", "microphone"]
    )
    assert claims_of(minted.token)["video"]["canPublishSources"] == ["microphone", "camera"]


def test_tokens_verify_with_livekits_own_verifier(factory: TokenFactory) -> None:
    minted = factory.join_token("standup", "user-42", can_publish_sources=["screen_share"])
    claims = TokenVerifier(KEY, SECRET).verify(minted.token)
    assert claims.identity == "user-42"
    assert claims.video is not None
    assert claims.video.room == "standup"
    assert claims.video.room_join is True
    assert claims.video.can_publish_sources == ["screen_share"]


@given(
    identity=st.text(min_size=1, max_size=MAX_NAME_LENGTH).filter(str.strip),
    room=st.text(min_size=1, max_size=MAX_NAME_LENGTH).filter(str.strip),
)
def test_any_valid_name_round_trips(identity: str, room: str) -> None:
    factory = TokenFactory(LiveKitConfig(url="ws://h:1", api_key=KEY, api_secret=SECRET))
    claims = claims_of(factory.join_token(room, identity).token)
    assert (claims["sub"], claims["video"]["room"]) == (identity, room)


# --- lifetimes ------------------------------------------------------------------------


def test_ttl_sets_exp_minus_nbf(factory: TokenFactory) -> None:
    claims = claims_of(factory.join_token("r", "i", ttl=timedelta(minutes=5)).token)
    assert claims["exp"] - claims["nbf"] == 300


def test_sub_second_part_of_a_ttl_is_dropped(factory: TokenFactory) -> None:
    claims = claims_of(factory.join_token("r", "i", ttl=timedelta(seconds=90.7)).token)
    assert claims["exp"] - claims["nbf"] == 90


def test_default_ttl_is_configurable(config: LiveKitConfig) -> None:
    factory = TokenFactory(config, default_ttl=timedelta(minutes=10))
    claims = claims_of(factory.join_token("r", "i").token)
    assert claims["exp"] - claims["nbf"] == 600


def test_max_ttl_is_allowed_and_a_second_more_is_not(factory: TokenFactory) -> None:
    claims = claims_of(factory.join_token("r", "i", ttl=timedelta(hours=24)).token)
    assert claims["exp"] - claims["nbf"] == 24 * 3600
    with pytest.raises(ConfigError, match="max_ttl"):
        factory.join_token("r", "i", ttl=timedelta(hours=24, seconds=1))


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-5), timedelta(milliseconds=500)])
def test_ttl_under_a_second_is_refused(factory: TokenFactory, ttl: timedelta) -> None:
    with pytest.raises(ConfigError, match="at least one second"):
        factory.join_token("r", "i", ttl=ttl)


def test_ttl_must_be_a_timedelta(factory: TokenFactory) -> None:
    with pytest.raises(ConfigError, match="timedelta"):
        factory.join_token("r", "i", ttl=3600)  # type: ignore[arg-type]


def test_default_ttl_over_max_ttl_is_refused(config: LiveKitConfig) -> None:
    with pytest.raises(ConfigError, match="max_ttl"):
        TokenFactory(config, default_ttl=timedelta(hours=2), max_ttl=timedelta(hours=1))


# --- argument validation --------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "   ", "\t\n"])
def test_empty_room_or_identity_is_refused(factory: TokenFactory, bad: str) -> None:
    with pytest.raises(ConfigError, match="room must be a non-empty"):
        factory.join_token(bad, "user-42")
    with pytest.raises(ConfigError, match="identity must be a non-empty"):
        factory.join_token("standup", bad)


def test_names_up_to_256_characters_are_allowed(factory: TokenFactory) -> None:
    longest = "x" * MAX_NAME_LENGTH
    claims = claims_of(factory.join_token(longest, longest).token)
    assert claims["sub"] == longest
    with pytest.raises(ConfigError, match="257 characters"):
        factory.join_token("x" * (MAX_NAME_LENGTH + 1), "user-42")
    with pytest.raises(ConfigError, match="257 characters"):
        factory.join_token("standup", "x" * (MAX_NAME_LENGTH + 1))


def test_unknown_publish_source_is_refused(factory: TokenFactory) -> None:
    with pytest.raises(ConfigError, match=r"'webcam'.*camera, microphone"):
        factory.join_token("r", "i", can_publish_sources=["camera", "webcam"])  # type: ignore[list-item]


def test_a_single_source_string_is_refused(factory: TokenFactory) -> None:
    with pytest.raises(ConfigError, match="list of source names"):
        factory.join_token("r", "i", can_publish_sources="camera")  # type: ignore[arg-type]


def test_attributes_must_map_strings_to_strings(factory: TokenFactory) -> None:
    with pytest.raises(ConfigError, match="attributes"):
        factory.join_token("r", "i", attributes={"seat": 3})  # type: ignore[dict-item]


def test_metadata_must_be_a_string(factory: TokenFactory) -> None:
    with pytest.raises(ConfigError, match="metadata must be a string"):
        factory.join_token("r", "i", metadata={"a": 1})  # type: ignore[arg-type]


# --- admin tokens ---------------------------------------------------------------------


def test_admin_token_has_only_the_grants_asked_for(factory: TokenFactory) -> None:
    claims = claims_of(factory.admin_token(room_create=True, room_list=True))
    video = claims["video"]
    assert video["roomCreate"] is True
    assert video["roomList"] is True
    assert "roomAdmin" not in video
    assert "roomJoin" not in video
    assert video["canPublish"] is False
    assert claims["exp"] - claims["nbf"] == 3600


def test_admin_token_for_one_room(factory: TokenFactory) -> None:
    claims = claims_of(factory.admin_token(room_admin_room="standup", ttl=timedelta(seconds=30)))
    assert claims["video"]["roomAdmin"] is True
    assert claims["video"]["room"] == "standup"
    assert "roomCreate" not in claims["video"]
    assert claims["exp"] - claims["nbf"] == 30


def test_admin_token_without_grants_is_refused(factory: TokenFactory) -> None:
    with pytest.raises(ConfigError, match="at least one grant"):
        factory.admin_token()
    with pytest.raises(ConfigError, match="room must be a non-empty"):
        factory.admin_token(room_admin_room=" ")


# --- import cost ----------------------------------------------------------------------

_HEAVY = ("livekit.api", "livekit.protocol", "aiohttp", "boto3", "minio", "python_on_whales")


@pytest.mark.parametrize(
    "statement",
    [
        "import infra_lib",
        "import infra_lib.livekit",
        "from infra_lib.livekit import LiveKitConfig\n"
        "LiveKitConfig(url='ws://h:1', api_key='k', api_secret='x' * 32)",
    ],
)
def test_importing_does_not_load_heavy_sdks(statement: str) -> None:
    code = (
        f"import sys\n{statement}\n"
        f"loaded = [m for m in {_HEAVY!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
