"""The console: server-rendered pages in Vietnamese (English on request)."""

from hub.web.i18n import install as install_i18n
from hub.web.settings import ConsoleSettings

__all__ = ["ConsoleSettings", "install_i18n"]
