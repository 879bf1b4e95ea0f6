"""The console: server-rendered pages in Vietnamese (English on request)."""

from hub.web.i18n import install as install_i18n

__all__ = ["install_i18n"]
