"""Settings of the auth slice (IOCHUB_AUTH__*)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AuthSettings(BaseModel):
    session_ttl_minutes: int = Field(12 * 60, ge=5, description="Browser session lifetime.")
    cookie_secure: bool = Field(
        True, description="Send the session cookie over HTTPS only (browsers exempt localhost)."
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins in a row before an account is locked."
    )
    lockout_minutes: int = Field(15, ge=1, description="How long a locked account stays locked.")
    login_attempts_per_minute: int = Field(
        20, ge=1, description="Login attempts one client address may make per minute."
    )
    login_delay_ms: int = Field(
        250, ge=0, description="Added delay on every failed login, to slow guessing."
    )
