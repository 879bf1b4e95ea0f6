"""Users, logins, sessions and API tokens."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.transactions import in_transaction

from hub.auth import audit_log as audit
from hub.auth.models import ApiToken, LoginSession, Role, User
from hub.auth.principal import ROLE_PERMISSIONS, Permission, Principal, scope_for
from hub.auth.secrets import (
    hash_password,
    new_token,
    password_problem,
    token_digest,
    username_problem,
    verify_password,
)
from hub.errors import Conflict, FieldProblem, NotAuthenticated, NotFound, ValidationFailed


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=15)
    failure_delay_s: float = 0.25
    session_ttl: timedelta = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str
    csrf_token: str
    expires_at: datetime
    principal: Principal
    language: str | None = None


def now() -> datetime:
    return datetime.now(UTC)


async def principal_for(user: User, via: str, csrf_token: str | None = None) -> Principal:
    ward_ids = [w.id for w in await user.wards.all()] if user.role == Role.WARD_STAFF else []
    return Principal(
        user_id=user.id,
        username=user.username,
        role=Role(user.role),
        ward_ids=scope_for(Role(user.role), ward_ids),
        via="session" if via == "session" else "token",
        csrf_token=csrf_token,
    )


async def create_user(
    username: str,
    password: str,
    role: Role,
    ward_codes: Sequence[str] = (),
    display_name: str = "",
    actor: Principal | None = None,
) -> User:
    problems = []
    if (reason := username_problem(username)) is not None:
        problems.append(FieldProblem("username", reason))
    if (reason := password_problem(password)) is not None:
        problems.append(FieldProblem("password", reason))
    if role == Role.WARD_STAFF and not ward_codes:
        problems.append(FieldProblem("wards", "ward staff must serve at least one ward"))
    wards = await User.ward_model().filter(code__in=list(ward_codes))
    missing = sorted(set(ward_codes) - {w.code for w in wards})
    if missing:
        problems.append(FieldProblem("wards", f"unknown ward codes: {', '.join(missing)}"))
    if problems:
        raise ValidationFailed("the user cannot be created as given", problems)
    if await User.filter(username=username).exists():
        raise Conflict(f"a user named {username!r} exists already")
    password_hash = await hash_password(password)
    async with in_transaction() as conn:
        user = await User.create(
            username=username,
            display_name=display_name,
            password_hash=password_hash,
            role=role.value,
            using_db=conn,
        )
        if wards:
            await user.wards.add(*wards, using_db=conn)
        await audit.record(
            actor,
            "user.create",
            "user",
            user.id,
            after={"username": username, "role": role.value, "wards": sorted(ward_codes)},
            connection=conn,
        )
    return user


async def set_password(user: User, password: str, actor: Principal | None = None) -> None:
    if (reason := password_problem(password)) is not None:
        raise ValidationFailed("the password cannot be used", [FieldProblem("password", reason)])
    user.password_hash = await hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    async with in_transaction() as conn:
        await user.save(using_db=conn)
        await audit.record(actor, "user.password", "user", user.id, connection=conn)


async def login(username: str, password: str, policy: LoginPolicy) -> NewSession:
    """Check a password and open a session; failures are slowed and lock the account."""
    user = await User.get_or_none(username=username)
    moment = now()
    locked = user is not None and user.locked_until is not None and user.locked_until > moment
    valid = await verify_password(password, user.password_hash if user else None)
    if user is None or not user.is_active or locked or not valid:
        if user is not None and not locked and not valid:
            user.failed_logins += 1
            if user.failed_logins >= policy.max_failures:
                user.locked_until = moment + policy.lockout
                user.failed_logins = 0
            await user.save(update_fields=["failed_logins", "locked_until"])
        await asyncio.sleep(policy.failure_delay_s)
        if locked:
            raise NotAuthenticated("this account is locked after repeated failed logins; try later")
        raise NotAuthenticated("wrong username or password")
    if user.failed_logins:
        user.failed_logins = 0
        await user.save(update_fields=["failed_logins"])
    token = new_token("s_")
    csrf = secrets.token_urlsafe(24)
    expires = moment + policy.session_ttl
    await LoginSession.create(
        token_hash=token_digest(token), csrf_token=csrf, user=user, expires_at=expires
    )
    return NewSession(
        token, csrf, expires, await principal_for(user, "session", csrf), user.language
    )


async def logout(token: str) -> None:
    await LoginSession.filter(token_hash=token_digest(token)).delete()


async def authenticate_session(token: str) -> Principal | None:
    session = await LoginSession.get_or_none(
        token_hash=token_digest(token), expires_at__gt=now()
    ).select_related("user")
    if session is None or not session.user.is_active:
        return None
    return await principal_for(session.user, "session", session.csrf_token)


async def remember_language(session_token: str, language: str) -> bool:
    """Keep the console language with the account of a live session; False without one."""
    principal = await authenticate_session(session_token)
    if principal is None:
        return False
    await User.filter(id=principal.user_id).update(language=language)
    return True


async def authenticate_token(token: str) -> Principal | None:
    api_token = await ApiToken.get_or_none(
        token_hash=token_digest(token), revoked_at=None
    ).select_related("user")
    moment = now()
    if api_token is None or not api_token.user.is_active:
        return None
    if api_token.expires_at is not None and api_token.expires_at <= moment:
        return None
    # Coarse last-use stamp: one write per minute per token, not one per request.
    if api_token.last_used_at is None or moment - api_token.last_used_at > timedelta(minutes=1):
        await ApiToken.filter(id=api_token.id).update(last_used_at=moment)
    return await principal_for(api_token.user, "token")


async def issue_token(
    user: User, name: str, actor: Principal | None = None, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a named API token, valid until `expires_at` (None: until revoked); the secret is
    returned once and stored only hashed."""
    if expires_at is not None and expires_at <= now():
        raise ValidationFailed(
            "the token would never be valid",
            [FieldProblem("expires_at", "must be in the future")],
        )
    if await ApiToken.filter(user_id=user.id, name=name).exists():
        raise Conflict(f"{user.username} already has a token named {name!r}")
    secret = new_token("t_")
    async with in_transaction() as conn:
        token = await ApiToken.create(
            name=name,
            token_hash=token_digest(secret),
            prefix=secret[:10],
            user=user,
            expires_at=expires_at,
            using_db=conn,
        )
        await audit.record(
            actor,
            "token.create",
            "api_token",
            token.id,
            after={
                "user": user.username,
                "name": name,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
            connection=conn,
        )
    return token, secret


async def user_named(username: str) -> User:
    user = await User.get_or_none(username=username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


async def tokens_of(user: User) -> list[ApiToken]:
    return await ApiToken.filter(user_id=user.id).order_by("id").select_related("user")


async def revoke_all_tokens(user: User, actor: Principal | None = None) -> int:
    """Revoke every live API token of a user at once (a lost laptop, a person leaving)."""
    async with in_transaction() as conn:
        live = await ApiToken.filter(user_id=user.id, revoked_at=None).using_db(conn)
        ids = [t.id for t in live]
        if ids:
            await ApiToken.filter(id__in=ids).using_db(conn).update(revoked_at=now())
            await audit.record(
                actor,
                "token.revoke_all",
                "user",
                user.id,
                after={"user": user.username, "tokens": ids},
                connection=conn,
            )
    return len(ids)


async def revoke_token(token_id: int, actor: Principal) -> ApiToken:
    token = await ApiToken.get_or_none(id=token_id)
    if token is None or (token.user_id != actor.user_id and actor.role != Role.ADMIN):
        raise NotFound(f"no API token {token_id}")
    if token.revoked_at is None:
        async with in_transaction() as conn:
            token.revoked_at = now()
            await token.save(using_db=conn)
            await audit.record(actor, "token.revoke", "api_token", token.id, connection=conn)
    return token


async def active_user_exists(username: str) -> bool:
    return bool(await User.filter(username=username, is_active=True).exists())


async def users_who_may(permission: Permission, ward_id: int | None) -> list[str]:
    """Usernames of the active people holding a permission over a ward: those serving every
    ward, and ward staff serving this one (nobody's scope holds a device without a ward
    but those serving every ward)."""
    found = []
    for user in await User.filter(is_active=True).order_by("username").prefetch_related("wards"):
        role = Role(user.role)
        if permission not in ROLE_PERMISSIONS[role]:
            continue
        scope = scope_for(role, [w.id for w in user.wards])
        if scope is None or (ward_id is not None and ward_id in scope):
            found.append(user.username)
    return found


async def purge_expired_sessions() -> int:
    return await LoginSession.filter(expires_at__lte=now()).delete()
