"""Private MQTT brokers for tests: a mosquitto on a free loopback port, with its own config."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class PrivateBroker:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes]

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def restart(self) -> None:
        """Stop and start again on the same port (persistence survives if configured)."""
        self.stop()
        self.process = _spawn(self.workdir)
        wait_for_port(self.port)


def mosquitto_available() -> bool:
    return Path(MOSQUITTO).exists()


def _spawn(workdir: Path) -> subprocess.Popen[bytes]:
    log = (workdir / "mosquitto.log").open("ab")
    return subprocess.Popen(
        [MOSQUITTO, "-c", str(workdir / "mosquitto.conf")],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )


@contextlib.contextmanager
def private_mosquitto(
    extra_config: str = "", allow_anonymous: bool = True
) -> Iterator[PrivateBroker]:
    """Start a mosquitto on a free port with the given extra config lines; stop it after."""
    workdir = Path(tempfile.mkdtemp(prefix="iochub-mosquitto-"))
    # Started as root, mosquitto drops to its own user: let it write its persistence file.
    workdir.chmod(0o777)
    port = free_port()
    (workdir / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\n"
        f"allow_anonymous {'true' if allow_anonymous else 'false'}\n"
        "persistence true\n"
        f"persistence_location {workdir}/\n"
        "max_queued_messages 100000\n"
        "max_inflight_messages 0\n"
        f"{extra_config}\n"
    )
    broker = PrivateBroker(port=port, workdir=workdir, process=_spawn(workdir))
    try:
        wait_for_port(port)
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
