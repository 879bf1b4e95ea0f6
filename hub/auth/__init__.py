"""People: users, roles, ward scope (Principal), sessions, API tokens and the audit log.
Other slices use what is named here; `wiring` (hub.auth.wiring) is the composition
root's hook."""

from hub.auth.settings import AuthSettings

__all__ = ["AuthSettings"]
