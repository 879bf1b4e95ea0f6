"""One private dynamic-security broker for the package, and the hub's client on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hub.devices.broker import MosquittoDynsec, new_device_secret
from tests.integration.broker.mqtt_helpers import Credentials
from tests.support.dynsec import DynsecBroker, dynsec_unavailable_reason, private_mosquitto_dynsec


@pytest.fixture(scope="package")
def dynsec_broker() -> Iterator[DynsecBroker]:
    reason = dynsec_unavailable_reason()
    if reason is not None:
        pytest.skip(f"needs Mosquitto's dynamic-security plugin: {reason}")
    with private_mosquitto_dynsec() as broker:
        yield broker


@pytest.fixture
def access(dynsec_broker: DynsecBroker) -> MosquittoDynsec:
    return MosquittoDynsec(
        dynsec_broker.host,
        dynsec_broker.port,
        dynsec_broker.admin_username,
        dynsec_broker.admin_password,
        timeout=3.0,
    )


@pytest.fixture(scope="package")
async def hub_credentials(dynsec_broker: DynsecBroker) -> Credentials:
    access = MosquittoDynsec(
        dynsec_broker.host,
        dynsec_broker.port,
        dynsec_broker.admin_username,
        dynsec_broker.admin_password,
    )
    hub = Credentials("iochub-hub-test", new_device_secret())
    await access.ensure_base_roles()
    await access.ensure_hub_client(hub.username, hub.secret)
    return hub
