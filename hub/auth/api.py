"""Login, logout, who am I, API tokens, users."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.params import FromPath, JSONBody, PathParameter

from hub.auth import service
from hub.auth.middleware import SESSION_COOKIE
from hub.auth.models import ApiToken, Role, User
from hub.auth.principal import CurrentUser, Permission, Principal
from hub.auth.secrets import USERNAME_PATTERN
from hub.errors import TooManyRequests
from hub.runtime import RuntimeKey, runtime_of

Username = Annotated[str, msgspec.Meta(pattern=USERNAME_PATTERN)]


class LoginIn(msgspec.Struct, forbid_unknown_fields=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class MeOut(msgspec.Struct):
    username: str
    role: str
    wards: list[int] | None
    csrf_token: str | None
    """Send as the X-CSRF-Token header on writes made with the session cookie."""


class TokenIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    expires_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    """When the token stops working (RFC 3339, with an offset); omit for a token that lives
    until revoked."""


class TokenOut(msgspec.Struct):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    """Last authenticated request, to the minute."""
    expires_at: datetime | None
    revoked_at: datetime | None
    token: str | None = None
    """The secret, shown once at creation and never again."""


class UserIn(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    password: Annotated[str, msgspec.Meta(max_length=256)]
    role: Role
    wards: list[str] = msgspec.field(default_factory=list)
    display_name: Annotated[str, msgspec.Meta(max_length=200)] = ""


class TokensRevoked(msgspec.Struct):
    revoked: int
    """How many live tokens were revoked."""


class UserOut(msgspec.Struct):
    id: int
    username: str
    display_name: str
    role: str
    wards: list[str]
    is_active: bool


class LoginThrottle:
    """At most `limit` login attempts per client address per window, before any hashing."""

    def __init__(self, limit: int = 20, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self.attempts: dict[str, deque[float]] = defaultdict(deque)

    def check(self, client: str) -> None:
        moment = time.monotonic()
        attempts = self.attempts[client]
        while attempts and moment - attempts[0] > self.window_s:
            attempts.popleft()
        if len(attempts) >= self.limit:
            raise TooManyRequests(
                f"too many login attempts from this address; wait {int(self.window_s)} seconds"
            )
        attempts.append(moment)


@dataclass(frozen=True)
class Logins:
    """How people log in to this hub: the lockout policy, the per-address throttle and
    whether the session cookie is for HTTPS only."""

    policy: service.LoginPolicy
    throttle: LoginThrottle
    cookie_secure: bool


LOGINS: RuntimeKey[Logins] = RuntimeKey("logins")


def logins_of(request: ASGIConnection[Any, Any, Any, Any]) -> Logins:
    return runtime_of(request).get(LOGINS)


def token_out(token: ApiToken, secret: str | None = None) -> TokenOut:
    return TokenOut(
        token.id,
        token.name,
        token.prefix,
        token.created_at,
        token.last_used_at,
        token.expires_at,
        token.revoked_at,
        secret,
    )


async def user_out(user: User) -> UserOut:
    wards = sorted(w.code for w in await user.wards.all())
    return UserOut(user.id, user.username, user.display_name, user.role, wards, user.is_active)


def session_cookie(value: str, max_age: int, secure: bool) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=value,
        max_age=max_age,
        httponly=True,
        secure=secure,
        samesite="strict",
        path="/",
    )


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    @post("/login", exclude_from_auth=True, status_code=200)
    async def login(
        self, request: Request[Any, Any, Any], data: JSONBody[LoginIn]
    ) -> Response[MeOut]:
        """Open a browser session (HttpOnly cookie); machines use API tokens instead."""
        logins = logins_of(request)
        policy = logins.policy
        logins.throttle.check(request.client.host if request.client else "unknown")
        session = await service.login(data.username, data.password, policy)
        principal = session.principal
        body = MeOut(
            principal.username,
            principal.role.value,
            sorted(principal.ward_ids) if principal.ward_ids is not None else None,
            session.csrf_token,
        )
        max_age = int(policy.session_ttl.total_seconds())
        return Response(
            body, cookies=[session_cookie(session.token, max_age, logins.cookie_secure)]
        )

    @post("/logout", status_code=200)
    async def logout(self, request: Request[Principal, Any, Any]) -> Response[dict[str, str]]:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            await service.logout(cookie)
        return Response(
            {"status": "logged out"},
            cookies=[session_cookie("", 0, logins_of(request).cookie_secure)],
        )

    @get("/me")
    async def me(self, principal: CurrentUser) -> MeOut:
        wards = sorted(principal.ward_ids) if principal.ward_ids is not None else None
        return MeOut(principal.username, principal.role.value, wards, principal.csrf_token)

    @get("/tokens")
    async def list_tokens(self, principal: CurrentUser) -> list[TokenOut]:
        tokens = await ApiToken.filter(user_id=principal.user_id).order_by("id")
        return [token_out(t) for t in tokens]

    @post("/tokens", status_code=201)
    async def create_token(self, principal: CurrentUser, data: JSONBody[TokenIn]) -> TokenOut:
        """Create a named API token for yourself; the secret is in this answer only."""
        user = await User.get(id=principal.user_id)
        token, secret = await service.issue_token(user, data.name, principal, data.expires_at)
        return token_out(token, secret)

    @delete("/tokens/{token_id:int}", status_code=200)
    async def revoke_token(self, principal: CurrentUser, token_id: FromPath[int]) -> TokenOut:
        return token_out(await service.revoke_token(token_id, principal))


class UserController(Controller):
    path = "/api/v1/users"
    tags = ["users"]

    @get("/")
    async def list_users(self, principal: CurrentUser) -> list[UserOut]:
        principal.require(Permission.USERS_ADMIN)
        return [await user_out(u) for u in await User.all().order_by("username")]

    @post("/", status_code=201)
    async def create_user(self, principal: CurrentUser, data: JSONBody[UserIn]) -> UserOut:
        principal.require(Permission.USERS_ADMIN)
        user = await service.create_user(
            data.username, data.password, data.role, data.wards, data.display_name, principal
        )
        return await user_out(user)

    @get("/{username:str}")
    async def get_user(
        self, principal: CurrentUser, username: Annotated[str, PathParameter(max_length=64)]
    ) -> UserOut:
        principal.require(Permission.USERS_ADMIN)
        return await user_out(await service.user_named(username))

    @get("/{username:str}/tokens")
    async def list_user_tokens(
        self, principal: CurrentUser, username: Annotated[str, PathParameter(max_length=64)]
    ) -> list[TokenOut]:
        """A user's API tokens, with when each expires and was last used."""
        principal.require(Permission.USERS_ADMIN)
        return [token_out(t) for t in await service.tokens_of(await service.user_named(username))]

    @delete("/{username:str}/tokens", status_code=200)
    async def revoke_user_tokens(
        self, principal: CurrentUser, username: Annotated[str, PathParameter(max_length=64)]
    ) -> TokensRevoked:
        """Revoke every API token of a user in one call; their sessions are not affected."""
        principal.require(Permission.USERS_ADMIN)
        user = await service.user_named(username)
        return TokensRevoked(await service.revoke_all_tokens(user, principal))
