"""People: users, roles, ward scope (Principal), sessions, API tokens and the audit log.

Other slices use what is named here and nothing else of the package (the layering
contracts in pyproject.toml check it); `wiring` (hub.auth.wiring) is the composition
root's hook. `audit.record(...)` writes one audit-log entry.
"""

from hub.auth import audit_log as audit
from hub.auth.api import LOGINS, Logins, logins_of, session_cookie
from hub.auth.middleware import CSRF_FIELD, SESSION_COOKIE, HubAuthentication, form_csrf
from hub.auth.models import Role
from hub.auth.principal import CurrentUser, Permission, Principal
from hub.auth.service import (
    LoginPolicy,
    active_user_exists,
    create_user,
    login,
    logout,
    remember_language,
    set_password,
    users_who_may,
)
from hub.auth.settings import AuthSettings

__all__ = [
    "CSRF_FIELD",
    "LOGINS",
    "SESSION_COOKIE",
    "AuthSettings",
    "CurrentUser",
    "HubAuthentication",
    "LoginPolicy",
    "Logins",
    "Permission",
    "Principal",
    "Role",
    "active_user_exists",
    "audit",
    "create_user",
    "form_csrf",
    "login",
    "logins_of",
    "logout",
    "remember_language",
    "session_cookie",
    "set_password",
    "users_who_may",
]
