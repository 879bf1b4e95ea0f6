"""What the auth slice adds to the hub: its routes (login, users, tokens, audit) and how
people log in (policy, throttle, cookie)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hub.auth.api import LOGINS, AuthController, Logins, LoginThrottle, UserController
from hub.auth.audit_api import AuditController
from hub.auth.service import LoginPolicy
from hub.auth.settings import AuthSettings
from hub.runtime import HubRuntime, Wiring


def routes() -> list[Any]:
    return [AuthController, UserController, AuditController]


async def start(hub: HubRuntime) -> None:
    auth = hub.settings.group(AuthSettings)
    hub.put(
        LOGINS,
        Logins(
            policy=LoginPolicy(
                max_failures=auth.login_max_failures,
                lockout=timedelta(minutes=auth.lockout_minutes),
                failure_delay_s=auth.login_delay_ms / 1000,
                session_ttl=timedelta(minutes=auth.session_ttl_minutes),
            ),
            throttle=LoginThrottle(limit=auth.login_attempts_per_minute),
            cookie_secure=auth.cookie_secure,
        ),
    )


wiring = Wiring("auth", routes, start)
