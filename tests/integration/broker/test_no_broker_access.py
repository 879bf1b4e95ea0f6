"""A broker without access control: every call is a no-op, and the hub says so once."""

from __future__ import annotations

import logging

import pytest

from drivers.contract import DeviceKind
from hub.devices.broker import NoBrokerAccess, new_device_secret


async def test_no_broker_access_warns_once_and_does_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    access = NoBrokerAccess("the embedded development broker has no dynamic-security plugin")
    caplog.set_level(logging.WARNING, logger="hub.devices.broker")
    secret = new_device_secret()
    await access.ensure_base_roles()
    await access.ensure_hub_client("hub", secret)
    await access.provision_device("sensor-1", DeviceKind.SENSOR, secret)
    await access.rotate_secret("sensor-1", secret)
    await access.disable_device("sensor-1")
    await access.enable_device("sensor-1")
    await access.remove_device("sensor-1")
    assert await access.list_devices() == []

    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING
    assert "device authentication is OFF" in warning.getMessage()
    assert "embedded development broker" in warning.getMessage()
    assert "embedded development broker" in access.describe()
    assert secret not in caplog.text
