"""Tokens: what they grant, when they stop working, and where the secret lives."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from livecast.auth import Identity, Role, TokenIssuer, load_or_create_secret, parse_duration
from livecast.errors import BadRequest, Unauthorized

SECRET = "s" * 48


def test_round_trip_carries_the_claims() -> None:
    issuer = TokenIssuer(SECRET)
    token = issuer.issue(sub="u-1", name=" Ana ", role=Role.HOST, streams={"st1", "st2"}, ttl_s=60)
    who = issuer.verify(token)
    assert who == Identity(
        sub="u-1",
        name="Ana",
        role=Role.HOST,
        streams=frozenset({"st1", "st2"}),
        expires_at=who.expires_at,
    )
    assert who.expires_at - time.time() == pytest.approx(60, abs=2)


def test_expired_and_forged_tokens_are_refused() -> None:
    issuer = TokenIssuer(SECRET)
    expired = issuer.issue(sub="u", name="n", role=Role.VIEWER, ttl_s=10, now=time.time() - 60)
    with pytest.raises(Unauthorized) as info:
        issuer.verify(expired)
    assert info.value.code == "token_expired"

    other = TokenIssuer("x" * 48).issue(sub="u", name="n", role=Role.ADMIN, streams={"*"}, ttl_s=60)
    with pytest.raises(Unauthorized) as info:
        issuer.verify(other)
    assert info.value.code == "token_invalid"

    # a viewer who rewrites their own role without the secret
    viewer = issuer.issue(sub="u", name="n", role=Role.VIEWER, ttl_s=60)
    claims = jwt.decode(viewer, options={"verify_signature": False})
    claims["role"] = "admin"
    tampered = jwt.encode(claims, "guess" * 8, algorithm="HS256")
    with pytest.raises(Unauthorized):
        issuer.verify(tampered)
    unsigned = jwt.encode(claims, "", algorithm="none")
    with pytest.raises(Unauthorized):
        issuer.verify(unsigned)

    # another deployment's issuer
    foreign = TokenIssuer(SECRET, issuer="elsewhere").issue(
        sub="u", name="n", role=Role.ADMIN, ttl_s=60
    )
    with pytest.raises(Unauthorized):
        issuer.verify(foreign)


def test_signed_but_malformed_claims_are_refused() -> None:
    now = int(time.time())
    base = {"iss": "livecast", "sub": "u", "name": "n", "iat": now, "exp": now + 60}
    issuer = TokenIssuer(SECRET)
    for bad in (
        {"role": "emperor"},
        {"role": "host", "streams": "st1"},
        {"role": "host", "name": 5},
    ):
        token = jwt.encode({**base, **bad}, SECRET, algorithm="HS256")
        with pytest.raises(Unauthorized):
            issuer.verify(token)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sub": "has space"}, "subject"),
        ({"name": ""}, "name"),
        ({"name": "Ana\u202eB"}, "name may not contain U\\+202E"),
        ({"name": "Ana\nB"}, "name may not contain U\\+000A"),
        ({"name": "Ana\x00"}, "name may not contain U\\+0000"),
        ({"streams": {"*"}}, "only for admins"),
        ({"streams": {"bad id"}}, "stream grant"),
        ({"ttl_s": 0}, "ttl"),
    ],
)
def test_issuing_checks_its_input(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"sub": "u", "name": "n", "role": Role.HOST, "ttl_s": 60, **kwargs}
    with pytest.raises(ValueError, match=message):
        TokenIssuer(SECRET).issue(**args)  # type: ignore[arg-type]


def test_permissions_by_role() -> None:
    def who(role: Role, streams: set[str] = set(), sub: str = "me") -> Identity:  # noqa: B006
        return Identity(sub=sub, name="n", role=role, streams=frozenset(streams))

    assert who(Role.ADMIN).can_manage("st", owner_sub="someone")
    assert who(Role.SELLER).can_manage("st", owner_sub="me")
    assert not who(Role.SELLER).can_manage("st", owner_sub="someone")
    assert who(Role.HOST, {"st"}).can_manage("st", owner_sub="someone")
    assert not who(Role.HOST, {"other"}).can_manage("st", owner_sub="someone")
    assert not who(Role.VIEWER, {"st"}).can_manage("st", owner_sub="me")
    assert not who(Role.HOST, {"st"}, sub="").can_manage("st", owner_sub="")


def test_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = load_or_create_secret("", tmp_path)
    assert len(first) >= 32
    assert (tmp_path / "token-secret").stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret("", tmp_path) == first
    assert load_or_create_secret("c" * 40, tmp_path) == "c" * 40


def test_durations() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("8h") == 28_800
    assert parse_duration("30d") == 2_592_000
    for bad in ("0", "8x", "-1h", "h"):
        with pytest.raises(BadRequest):
            parse_duration(bad)
