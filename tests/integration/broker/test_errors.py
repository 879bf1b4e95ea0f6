"""Failures of the control API tell the caller whether trying again may help."""

from __future__ import annotations

import pytest

from drivers.contract import DeviceKind
from hub.devices.broker import BrokerAccessError, MosquittoDynsec, new_device_secret
from tests.support.brokers import free_port, private_mosquitto
from tests.support.dynsec import DynsecBroker


async def test_wrong_admin_credentials_are_terminal(dynsec_broker: DynsecBroker) -> None:
    wrong_password = new_device_secret()
    access = MosquittoDynsec(
        dynsec_broker.host, dynsec_broker.port, dynsec_broker.admin_username, wrong_password
    )
    with pytest.raises(BrokerAccessError, match="refused the admin credentials") as refused:
        await access.list_devices()
    assert not refused.value.retryable
    assert wrong_password not in str(refused.value)
    assert wrong_password not in repr(access)


async def test_a_command_the_plugin_rejects_is_terminal(dynsec_broker: DynsecBroker) -> None:
    access = MosquittoDynsec(
        dynsec_broker.host,
        dynsec_broker.port,
        dynsec_broker.admin_username,
        dynsec_broker.admin_password,
    )
    async with access._session() as session:
        with pytest.raises(BrokerAccessError, match="Unknown command") as refused:
            await session.check({"command": "noSuchCommand", "username": "x"})
    assert not refused.value.retryable


async def test_an_unreachable_broker_is_retryable() -> None:
    access = MosquittoDynsec("127.0.0.1", free_port(), "admin", "secret", timeout=1.0)
    with pytest.raises(BrokerAccessError, match="unreachable") as failed:
        await access.ensure_base_roles()
    assert failed.value.retryable


async def test_a_broker_without_the_plugin_is_retryable_and_says_why() -> None:
    with private_mosquitto(allow_anonymous=True) as plain:
        access = MosquittoDynsec(plain.host, plain.port, "admin", "secret", timeout=0.5)
        with pytest.raises(BrokerAccessError, match="is the plugin loaded") as failed:
            await access.provision_device("sensor-1", DeviceKind.SENSOR, new_device_secret())
    assert failed.value.retryable
