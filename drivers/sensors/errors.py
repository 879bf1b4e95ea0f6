"""Transport failures of the sensor drivers, translated from paho-mqtt and aiocoap."""

from __future__ import annotations

from typing import ClassVar


class SensorTransportError(Exception):
    """A transport failed; ``retryable`` tells a back-off from a configuration error."""

    retryable: ClassVar[bool] = True


class BrokerUnavailable(SensorTransportError):
    """The broker cannot be reached or dropped the connection; the driver retries."""


class BrokerRefused(SensorTransportError):
    """The broker refused the driver (credentials, authorisation, subscription); not retried."""

    retryable = False


class CoapBindFailed(SensorTransportError):
    """The CoAP server cannot listen on its address (in use, or not local); not retried."""

    retryable = False
