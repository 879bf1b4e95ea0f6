"""A private mosquitto with the dynamic-security plugin and a fresh admin, for tests."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.brokers import PrivateBroker, mosquitto_available, private_mosquitto

DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
MOSQUITTO_CTRL = Path(shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl")
# Started as root, mosquitto drops to this user; the plugin must be able to
# rewrite its config file as that user, or every change is lost on restart.
BROKER_USER = "mosquitto"


@dataclass
class DynsecBroker:
    broker: PrivateBroker
    admin_username: str
    admin_password: str
    config_file: Path

    @property
    def host(self) -> str:
        return self.broker.host

    @property
    def port(self) -> int:
        return self.broker.port


def dynsec_unavailable_reason() -> str | None:
    """Why a dynamic-security broker cannot run here, or None if it can."""
    if not mosquitto_available():
        return "mosquitto is not installed"
    if not DYNSEC_PLUGIN.exists():
        return f"the dynamic-security plugin {DYNSEC_PLUGIN} is not installed"
    if not MOSQUITTO_CTRL.exists():
        return f"{MOSQUITTO_CTRL} is not installed"
    return None


def init_dynsec_config(config_file: Path, admin_username: str, admin_password: str) -> None:
    """Write a fresh plugin config holding only the admin, as ``mosquitto_ctrl`` does."""
    subprocess.run(
        [MOSQUITTO_CTRL, "dynsec", "init", str(config_file), admin_username, admin_password],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
        timeout=10,
    )


def hand_to_broker_user(*paths: Path) -> None:
    """Let a broker that dropped root privileges write these paths."""
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam(BROKER_USER)
    except KeyError:
        return
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid)


@contextlib.contextmanager
def private_mosquitto_dynsec(admin_username: str = "dynsec-admin") -> Iterator[DynsecBroker]:
    """A private mosquitto on a free loopback port, anonymous refused, plugin loaded."""
    statedir = Path(tempfile.mkdtemp(prefix="iochub-dynsec-"))
    config_file = statedir / "dynamic-security.json"
    admin_password = secrets.token_urlsafe(16)
    try:
        init_dynsec_config(config_file, admin_username, admin_password)
        hand_to_broker_user(statedir, config_file)
        extra = f"plugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {config_file}\n"
        with private_mosquitto(extra_config=extra, allow_anonymous=False) as broker:
            yield DynsecBroker(broker, admin_username, admin_password, config_file)
    finally:
        shutil.rmtree(statedir, ignore_errors=True)
