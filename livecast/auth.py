"""Signed, expiring tokens and the identities they carry.

A token is an HS256 JWT with ``sub``, ``name``, ``role`` and ``streams`` (the stream ids
its role applies to; ``*`` only for admins), plus ``iat``/``exp``/``iss``. Requests
without a token are anonymous viewers; a token that is present but expired, forged or
malformed is always a 401, never silently anonymous.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import jwt
from aiohttp import web

from livecast.display_text import check_line
from livecast.error_codes import ErrorCode
from livecast.errors import BadRequest, Forbidden, Unauthorized
from livecast.ids import SUBJECT_PATTERN

__all__ = [
    "ANONYMOUS",
    "Identity",
    "Role",
    "TokenIssuer",
    "identity_from_request",
    "load_or_create_secret",
    "parse_duration",
]

_SUBJECT = re.compile(SUBJECT_PATTERN)
_STREAM_GRANT = re.compile(r"^(\*|[A-Za-z0-9_-]{1,64})$")
_ALGORITHM = "HS256"
# Verified tokens remembered per issuer (the oldest go first): a token is checked once,
# not on every request. About 450 bytes each.
_VERIFIED_CACHE = 50_000
_SECRET_FILE = "token-secret"


class Role(StrEnum):
    VIEWER = "viewer"
    SELLER = "seller"
    HOST = "host"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking. ``sub == ""`` means anonymous."""

    sub: str
    name: str
    role: Role
    streams: frozenset[str] = frozenset()
    expires_at: int = 0

    @property
    def is_anonymous(self) -> bool:
        return not self.sub

    def has_stream_grant(self, stream_id: str) -> bool:
        return "*" in self.streams or stream_id in self.streams

    def can_manage(self, stream_id: str, owner_sub: str) -> bool:
        """Host actions on a stream: its seller, a host or seller granted it, or an admin."""
        if self.is_anonymous:
            return False
        if self.role is Role.ADMIN:
            return True
        if self.role is Role.SELLER and self.sub == owner_sub:
            return True
        return self.role in (Role.HOST, Role.SELLER) and self.has_stream_grant(stream_id)

    def require_manage(self, stream_id: str, owner_sub: str) -> None:
        self.require_identity()
        if not self.can_manage(stream_id, owner_sub):
            raise Forbidden(f"role {self.role.value!r} may not manage stream {stream_id!r}")

    def require_identity(self) -> None:
        if self.is_anonymous:
            raise Unauthorized("this needs a token: send 'Authorization: Bearer <token>'")

    def require_role(self, *roles: Role) -> None:
        self.require_identity()
        if self.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(f"role {self.role.value!r} may not do this (needs one of: {allowed})")


ANONYMOUS = Identity(sub="", name="", role=Role.VIEWER)


class TokenIssuer:
    """Issues and verifies tokens with one HMAC secret."""

    def __init__(self, secret: str, *, issuer: str = "livecast") -> None:
        self._secret = secret
        self._issuer = issuer
        # token -> its identity, for tokens that verified; each use checks the expiry.
        self._verified: dict[str, Identity] = {}

    def derived_key(self, purpose: str) -> bytes:
        """A key for ``purpose`` (HMAC-SHA256 of it under the token secret): other
        signatures made from the same secret never verify as tokens, nor tokens as them."""
        return hmac.new(self._secret.encode(), purpose.encode(), hashlib.sha256).digest()

    def sub_issuer(self, name: str) -> TokenIssuer:
        """An issuer with the same secret under ``<issuer>/<name>``: tokens of one kind
        that verify only there (and never here), such as nodes' edge tokens."""
        return TokenIssuer(self._secret, issuer=f"{self._issuer}/{name}")

    def issue(
        self,
        *,
        sub: str,
        name: str,
        role: Role,
        streams: frozenset[str] | set[str] | tuple[str, ...] = (),
        ttl_s: int,
        now: float | None = None,
    ) -> str:
        if not _SUBJECT.match(sub):
            raise ValueError(f"subject {sub!r} must be 1-64 of A-Z a-z 0-9 . _ : @ -")
        name = check_line("name", name.strip())
        if not 1 <= len(name) <= 64:
            raise ValueError("name must be 1-64 characters")
        for grant in streams:
            if not _STREAM_GRANT.match(grant):
                raise ValueError(f"stream grant {grant!r} is not a stream id or '*'")
        if "*" in streams and role is not Role.ADMIN:
            raise ValueError("the '*' stream grant is only for admins")
        if ttl_s <= 0:
            raise ValueError("ttl must be positive")
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self._issuer,
            "sub": sub,
            "name": name,
            "role": role.value,
            "streams": sorted(streams),
            "iat": issued,
            "exp": issued + ttl_s,
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> Identity:
        """The token's identity; 401 ``token_expired`` or ``token_invalid``. A token that
        verified is remembered (tokens cannot be revoked, only expire), so a buyer's
        requests cost one HMAC check, not one each."""
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at > time.time():
                return known
            del self._verified[token]
        identity = self._verify(token)
        if len(self._verified) >= _VERIFIED_CACHE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = identity
        return identity

    def _verify(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired", code=ErrorCode.TOKEN_EXPIRED) from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"token is not valid: {exc}", code=ErrorCode.TOKEN_INVALID) from None
        try:
            role = Role(str(claims.get("role")))
            streams = claims.get("streams", [])
            name = claims.get("name")
            sub = claims["sub"]
            if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
                raise ValueError("streams")
            if not isinstance(name, str) or not isinstance(sub, str) or not _SUBJECT.match(sub):
                raise ValueError("name")
        except (ValueError, KeyError):
            raise Unauthorized("token claims are malformed", code=ErrorCode.TOKEN_INVALID) from None
        return Identity(
            sub=sub, name=name, role=role, streams=frozenset(streams), expires_at=int(claims["exp"])
        )

    def identity_from_header(self, authorization: str | None) -> Identity:
        if authorization is None:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(
                "Authorization header must be 'Bearer <token>'", code=ErrorCode.TOKEN_INVALID
            )
        return self.verify(token.strip())


def identity_from_request(
    issuer: TokenIssuer, request: web.Request, *, allow_query: bool = False
) -> Identity:
    """The caller's identity: ``Authorization: Bearer`` (and ``?token=`` if allowed)."""
    header = request.headers.get("Authorization")
    if header is None and allow_query and "token" in request.query:
        return issuer.verify(request.query["token"])
    return issuer.identity_from_header(header)


def load_or_create_secret(configured: str, data_dir: Path, name: str = _SECRET_FILE) -> str:
    """The configured secret, or one generated once and kept (mode 0600) in ``data_dir``."""
    if configured:
        return configured
    path = data_dir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise ValueError(f"token secret in {path} is too short; delete it to generate a new one")
    return secret


_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``8h``, ``30d`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise BadRequest(f"{text!r} is not a duration like 90s, 15m, 8h or 30d")
    return int(match.group(1)) * _UNITS[match.group(2)]
