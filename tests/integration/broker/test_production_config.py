"""deploy/mosquitto/mosquitto.conf runs as shipped: plugin, loopback hub listener, TLS devices."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from drivers.contract import DeviceKind, Topics
from hub.devices.broker import MosquittoDynsec, new_device_secret
from tests.integration.broker.mqtt_helpers import (
    NOT_AUTHORISED,
    Credentials,
    connect_refusal,
    messages_until,
)
from tests.support.brokers import MOSQUITTO, PrivateBroker, free_port, wait_for_port
from tests.support.dynsec import (
    DynsecBroker,
    dynsec_unavailable_reason,
    hand_to_broker_user,
    init_dynsec_config,
)

PRODUCTION_CONFIG = Path(__file__).parents[3] / "deploy" / "mosquitto" / "mosquitto.conf"


@dataclass
class ProductionBroker:
    local: DynsecBroker
    tls_port: int
    ca_file: Path


def _issue_certificates(certdir: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1, where the config expects them."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "iochub test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (certdir / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (certdir / "server.crt").write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    (certdir / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _render(statedir: Path, certdir: Path, local_port: int, tls_port: int) -> str:
    """The shipped config with paths moved into a temp dir and ports on loopback."""
    config = PRODUCTION_CONFIG.read_text()
    replacements = {
        "/var/lib/mosquitto/": f"{statedir}/",
        "/etc/mosquitto/certs/": f"{certdir}/",
        "listener 1883 127.0.0.1\n": f"listener {local_port} 127.0.0.1\n",
        "listener 8883\n": f"listener {tls_port} 127.0.0.1\n",
        "log_dest syslog\n": "log_dest stdout\n",
    }
    for shipped, local in replacements.items():
        assert shipped in config, f"{PRODUCTION_CONFIG} no longer contains {shipped!r}"
        config = config.replace(shipped, local)
    return config


@pytest.fixture(scope="module")
def production_broker() -> Iterator[ProductionBroker]:
    reason = dynsec_unavailable_reason()
    if reason is not None:
        pytest.skip(f"needs Mosquitto's dynamic-security plugin: {reason}")
    workdir = Path(tempfile.mkdtemp(prefix="iochub-prod-mosquitto-"))
    statedir, certdir = workdir / "state", workdir / "certs"
    statedir.mkdir()
    certdir.mkdir()
    _issue_certificates(certdir)
    admin = Credentials("dynsec-admin", new_device_secret())
    init_dynsec_config(statedir / "dynamic-security.json", admin.username, admin.secret)
    hand_to_broker_user(workdir, statedir, certdir, *statedir.iterdir(), *certdir.iterdir())
    local_port, tls_port = free_port(), free_port()
    (workdir / "mosquitto.conf").write_text(_render(statedir, certdir, local_port, tls_port))
    log = (workdir / "mosquitto.log").open("ab")
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(workdir / "mosquitto.conf")],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    broker = PrivateBroker(port=local_port, workdir=workdir, process=process)
    try:
        wait_for_port(local_port)
        wait_for_port(tls_port)
        yield ProductionBroker(
            DynsecBroker(broker, admin.username, admin.secret, statedir / "dynamic-security.json"),
            tls_port,
            certdir / "ca.crt",
        )
    finally:
        broker.stop()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _device_tls_context(ca_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def test_a_device_talks_over_tls_and_the_hub_listens_on_loopback(
    production_broker: ProductionBroker,
) -> None:
    local = production_broker.local
    access = MosquittoDynsec(local.host, local.port, local.admin_username, local.admin_password)
    hub = Credentials("iochub", new_device_secret())
    sensor = Credentials("sensor-tls-1", new_device_secret())
    await access.ensure_base_roles()
    await access.ensure_hub_client(hub.username, hub.secret)
    await access.provision_device(sensor.username, DeviceKind.SENSOR, sensor.secret)

    telemetry = Topics.for_device(sensor.username, Topics.TELEMETRY)
    async with aiomqtt.Client(
        local.host, local.port, username=hub.username, password=hub.secret, timeout=3
    ) as hub_client:
        await hub_client.subscribe(f"$share/hubs/{Topics.all_devices(Topics.TELEMETRY)}", qos=1)
        async with aiomqtt.Client(
            "127.0.0.1",
            production_broker.tls_port,
            username=sensor.username,
            password=sensor.secret,
            tls_context=_device_tls_context(production_broker.ca_file),
            timeout=3,
        ) as device:
            await device.publish(telemetry, b'{"no2": 31}', qos=1)
        assert [m.payload for m in await messages_until(hub_client, telemetry)] == [b'{"no2": 31}']


async def test_the_device_listener_speaks_tls_only_and_nobody_is_anonymous(
    production_broker: ProductionBroker,
) -> None:
    plaintext_on_tls_port = aiomqtt.Client(
        "127.0.0.1", production_broker.tls_port, username="x", password="y", timeout=0.5
    )
    with pytest.raises(aiomqtt.MqttError):
        async with plaintext_on_tls_port:
            pass
    assert await connect_refusal(production_broker.local, None) == NOT_AUTHORISED
