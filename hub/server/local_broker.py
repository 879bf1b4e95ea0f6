"""A private Mosquitto with the dynamic-security plugin, for the demo and for trials.

Devices then log in with their own credentials and are confined to their own topics,
exactly as in production (deploy/mosquitto/); only the listener is loopback and plain.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = Path(shutil.which("mosquitto") or "/usr/sbin/mosquitto")
MOSQUITTO_CTRL = Path(shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl")
DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
PR_SET_PDEATHSIG = 1
BROKER_USER = "mosquitto"  # mosquitto started as root drops to this user


@dataclass(frozen=True)
class LocalBroker:
    port: int
    admin_username: str
    admin_password: str
    hub_username: str
    hub_password: str


class PortTaken(RuntimeError):
    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} on 127.0.0.1 is taken")
        self.port = port


def die_with_parent() -> None:
    """In the child before exec: the kernel sends it SIGTERM when its parent dies, however
    the parent dies (prctl PR_SET_PDEATHSIG; Linux only, a no-op elsewhere). A process that
    changes its user id (mosquitto dropping root) loses this, so the parent still stops
    its children itself on SIGTERM and SIGINT."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def unavailable_reason() -> str | None:
    for path, what in (
        (MOSQUITTO, "mosquitto"),
        (MOSQUITTO_CTRL, "mosquitto_ctrl"),
        (DYNSEC_PLUGIN, "the dynamic-security plugin"),
    ):
        if not path.exists():
            return f"{what} is not installed ({path})"
    return None


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nobody listens there. SO_REUSEADDR, as mosquitto and uvicorn bind: connections of a
    stopped server lingering in TIME_WAIT do not make its port taken."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _give_to_broker_user(*paths: Path) -> None:
    if os.geteuid() != 0:
        return
    with contextlib.suppress(KeyError):
        user = pwd.getpwnam(BROKER_USER)
        for path in paths:
            os.chown(path, user.pw_uid, user.pw_gid)


@contextlib.contextmanager
def local_broker(folder: Path, port: int | None = None) -> Iterator[LocalBroker]:
    """Start mosquitto with a fresh dynamic-security admin on `port` (a free one when None);
    stop it on exit. A taken port is refused, never swapped for another: devices configured
    for it would log in to whatever holds it."""
    if port is not None and not port_free(port):
        raise PortTaken(port)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o750)
    dynsec = folder / "dynamic-security.json"
    dynsec.unlink(missing_ok=True)
    admin_password = secrets.token_urlsafe(18)
    subprocess.run(
        [str(MOSQUITTO_CTRL), "dynsec", "init", str(dynsec), "iochub-admin", admin_password],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
        timeout=15,
    )
    port = port if port is not None else free_port()
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous false\n"
        f"plugin {DYNSEC_PLUGIN}\n"
        f"plugin_opt_config_file {dynsec}\n"
        "persistence true\n"
        f"persistence_location {folder}/\n"
        "max_queued_messages 100000\n"
        "max_inflight_messages 0\n"
    )
    _give_to_broker_user(folder, dynsec)
    log = (folder / "mosquitto.log").open("ab")
    process = subprocess.Popen(
        [str(MOSQUITTO), "-c", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start; see {folder / 'mosquitto.log'}")
            time.sleep(0.05)
        yield LocalBroker(
            port, "iochub-admin", admin_password, "iochub-hub", secrets.token_urlsafe(18)
        )
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False
