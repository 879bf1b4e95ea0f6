"""A recording DriverSink fixture and broker fixtures."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.brokers import PrivateBroker, mosquitto_available, private_mosquitto
from tests.support.sinks import RecordingSink


@pytest.fixture
def broker() -> Iterator[PrivateBroker]:
    """A broker of this test's own: persistent sessions and retained messages must not leak
    between tests, so this overrides the session-wide broker of tests/conftest.py."""
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed")
    with private_mosquitto() as running_broker:
        yield running_broker


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


BROKER_USERS = {"iochub": "s3cret", "hp-c": "device-secret"}


@pytest.fixture
def password_file() -> Iterator[Path]:
    """A mosquitto password file for BROKER_USERS, readable by the user mosquitto runs as."""
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed")
    directory = Path(tempfile.mkdtemp(prefix="iochub-passwords-"))
    directory.chmod(0o755)
    path = directory / "passwords"
    for user, password in BROKER_USERS.items():
        create = ["-c"] if not path.exists() else []
        subprocess.run(
            ["mosquitto_passwd", "-b", *create, str(path), user, password],
            check=True,
            capture_output=True,
        )
    path.chmod(0o644)
    yield path
    shutil.rmtree(directory, ignore_errors=True)
