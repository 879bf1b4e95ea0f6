"""Per-device broker identities on a real mosquitto with the dynamic-security plugin."""

from __future__ import annotations

import logging

import aiomqtt
import pytest

from drivers.contract import DeviceKind, Topics
from hub.devices.broker import (
    BrokerAccessError,
    BrokerDevice,
    DeviceNotProvisioned,
    MosquittoDynsec,
    new_device_secret,
)
from tests.integration.broker.mqtt_helpers import (
    GRANTED_QOS_1,
    NOT_AUTHORISED,
    SUBSCRIPTION_REFUSED,
    Credentials,
    client,
    connect_refusal,
    disconnected_within,
    messages_until,
    messages_within,
    provisioned,
    subscribe,
    unique_uid,
)
from tests.support.dynsec import DynsecBroker, private_mosquitto_dynsec

ALL_DEVICES = f"{Topics.ROOT}/#"


async def test_sensor_telemetry_reaches_the_hub(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker, hub_credentials: Credentials
) -> None:
    sensor = await provisioned(access, DeviceKind.SENSOR)
    telemetry = Topics.for_device(sensor.username, Topics.TELEMETRY)
    async with client(dynsec_broker, hub_credentials) as hub:
        await hub.subscribe(ALL_DEVICES, qos=1)
        async with client(dynsec_broker, sensor) as device:
            await device.publish(telemetry, b'{"pm25": 12.5}', qos=1)
        (message,) = await messages_until(hub, telemetry)
    assert message.payload == b'{"pm25": 12.5}'


async def test_a_device_cannot_publish_as_another_device(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker, hub_credentials: Credentials
) -> None:
    sensor = await provisioned(access, DeviceKind.SENSOR)
    other_sensor = await provisioned(access, DeviceKind.SENSOR)
    speaker = await provisioned(access, DeviceKind.SPEAKER)
    forged = [
        Topics.for_device(other_sensor.username, Topics.TELEMETRY),
        Topics.for_device(speaker.username, Topics.ACK),
        Topics.for_device(speaker.username, Topics.COMMAND),
        Topics.for_device(sensor.username, Topics.ACK),
        Topics.for_device(sensor.username, Topics.COMMAND),
        f"{Topics.ROOT}/{sensor.username}/telemetry/extra",
    ]
    own = Topics.for_device(sensor.username, Topics.TELEMETRY)
    async with client(dynsec_broker, hub_credentials) as hub:
        await hub.subscribe(ALL_DEVICES, qos=1)
        async with client(dynsec_broker, sensor) as device:
            for topic in forged:
                await device.publish(topic, b"forged", qos=1)
            await device.publish(own, b"genuine", qos=1)
        received = await messages_until(hub, own)
    assert [(m.topic.value, m.payload) for m in received] == [(own, b"genuine")]


async def test_a_sensor_cannot_listen_to_a_speakers_commands(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker, hub_credentials: Credentials
) -> None:
    sensor = await provisioned(access, DeviceKind.SENSOR)
    speaker = await provisioned(access, DeviceKind.SPEAKER)
    command_topic = Topics.for_device(speaker.username, Topics.COMMAND)
    async with (
        client(dynsec_broker, sensor) as eavesdropper,
        client(dynsec_broker, speaker) as target,
        client(dynsec_broker, hub_credentials) as hub,
    ):
        assert await subscribe(eavesdropper, command_topic) == SUBSCRIPTION_REFUSED
        assert await subscribe(eavesdropper, ALL_DEVICES) == SUBSCRIPTION_REFUSED
        await target.subscribe(command_topic, qos=1)
        await hub.publish(command_topic, b'{"action": "play"}', qos=1)
        assert [m.payload for m in await messages_until(target, command_topic)] == [
            b'{"action": "play"}'
        ]
        assert await messages_within(eavesdropper, 0.3) == []


async def test_a_speaker_gets_its_own_commands_only_and_its_acks_reach_the_hub(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker, hub_credentials: Credentials
) -> None:
    speaker = await provisioned(access, DeviceKind.SPEAKER)
    neighbour = await provisioned(access, DeviceKind.SPEAKER)
    own_commands = Topics.for_device(speaker.username, Topics.COMMAND)
    neighbour_commands = Topics.for_device(neighbour.username, Topics.COMMAND)
    ack = Topics.for_device(speaker.username, Topics.ACK)
    async with (
        client(dynsec_broker, speaker) as device,
        client(dynsec_broker, hub_credentials) as hub,
    ):
        assert await subscribe(device, own_commands) == GRANTED_QOS_1
        assert await subscribe(device, neighbour_commands) == SUBSCRIPTION_REFUSED
        await hub.subscribe(Topics.all_devices(Topics.ACK), qos=1)
        await hub.publish(neighbour_commands, b"not yours", qos=1)
        await hub.publish(own_commands, b"yours", qos=1)
        received = await messages_until(device, own_commands)
        assert [(m.topic.value, m.payload) for m in received] == [(own_commands, b"yours")]

        await device.publish(ack, b'{"stage": "received"}', qos=1)
        assert [m.payload for m in await messages_until(hub, ack)] == [b'{"stage": "received"}']


async def test_speakers_hear_group_commands_and_their_groups_but_cannot_forge_them(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker, hub_credentials: Credentials
) -> None:
    speaker = await provisioned(access, DeviceKind.SPEAKER)
    neighbour = await provisioned(access, DeviceKind.SPEAKER)
    sensor = await provisioned(access, DeviceKind.SENSOR)
    group = Topics.for_group("ward-may-to")
    own_groups = Topics.for_device(speaker.username, Topics.GROUPS)
    async with (
        client(dynsec_broker, speaker) as device,
        client(dynsec_broker, sensor) as not_a_speaker,
        client(dynsec_broker, hub_credentials) as hub,
    ):
        assert await subscribe(device, group) == GRANTED_QOS_1
        assert await subscribe(device, own_groups) == GRANTED_QOS_1
        assert await subscribe(device, Topics.for_device(neighbour.username, Topics.GROUPS)) == (
            SUBSCRIPTION_REFUSED
        )
        assert await subscribe(not_a_speaker, group) == SUBSCRIPTION_REFUSED
        # A speaker may not speak for the hub: neither to its ward nor about its groups.
        await device.publish(group, b"forged", qos=1)
        await device.publish(own_groups, b"forged", qos=1, retain=True)
        await hub.publish(own_groups, b'{"groups":["ward-may-to"]}', qos=1, retain=True)
        await hub.publish(group, b"announcement", qos=1)
        received = await messages_until(device, group)
        # Cleared, so later tests on this broker see no retained message of this one.
        await hub.publish(own_groups, b"", qos=1, retain=True)
        assert [(m.topic.value, m.payload) for m in received] == [
            (own_groups, b'{"groups":["ward-may-to"]}'),
            (group, b"announcement"),
        ]


async def test_the_hub_may_use_shared_subscriptions(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker, hub_credentials: Credentials
) -> None:
    camera = await provisioned(access, DeviceKind.CAMERA)
    status = Topics.for_device(camera.username, Topics.STATUS)
    async with client(dynsec_broker, hub_credentials) as hub:
        shared = f"$share/hubs/{Topics.all_devices(Topics.STATUS)}"
        assert await subscribe(hub, shared) == GRANTED_QOS_1
        async with client(dynsec_broker, camera) as device:
            await device.publish(status, b"online", qos=1)
        assert [m.payload for m in await messages_until(hub, status)] == [b"online"]


async def test_wrong_secret_and_anonymous_clients_are_refused_at_connect(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker
) -> None:
    sensor = await provisioned(access, DeviceKind.SENSOR)
    assert await connect_refusal(dynsec_broker, sensor) is None
    wrong = Credentials(sensor.username, new_device_secret())
    assert await connect_refusal(dynsec_broker, wrong) == NOT_AUTHORISED
    assert await connect_refusal(dynsec_broker, None) == NOT_AUTHORISED
    unknown = Credentials(unique_uid(DeviceKind.SENSOR), new_device_secret())
    assert await connect_refusal(dynsec_broker, unknown) == NOT_AUTHORISED


async def test_disabling_cuts_a_connected_device_off_until_it_is_enabled(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker
) -> None:
    speaker = await provisioned(access, DeviceKind.SPEAKER)
    async with client(dynsec_broker, speaker) as device:
        await access.disable_device(speaker.username)
        assert await disconnected_within(device, 3.0)
    assert await connect_refusal(dynsec_broker, speaker) == NOT_AUTHORISED
    assert BrokerDevice(speaker.username, DeviceKind.SPEAKER, enabled=False) in (
        await access.list_devices()
    )

    await access.enable_device(speaker.username)
    assert await connect_refusal(dynsec_broker, speaker) is None


async def test_removing_cuts_a_connected_device_off_for_good(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker
) -> None:
    sensor = await provisioned(access, DeviceKind.SENSOR)
    async with client(dynsec_broker, sensor) as device:
        await access.remove_device(sensor.username)
        assert await disconnected_within(device, 3.0)
    assert await connect_refusal(dynsec_broker, sensor) == NOT_AUTHORISED
    assert sensor.username not in {d.uid for d in await access.list_devices()}

    await access.remove_device(sensor.username)
    with pytest.raises(DeviceNotProvisioned):
        await access.disable_device(sensor.username)
    with pytest.raises(DeviceNotProvisioned):
        await access.rotate_secret(sensor.username, new_device_secret())


async def test_rotation_replaces_the_secret_and_ends_the_old_session(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker
) -> None:
    old = await provisioned(access, DeviceKind.SENSOR)
    new = Credentials(old.username, new_device_secret())
    async with client(dynsec_broker, old) as device:
        await access.rotate_secret(old.username, new.secret)
        assert await disconnected_within(device, 3.0)
    assert await connect_refusal(dynsec_broker, old) == NOT_AUTHORISED
    assert await connect_refusal(dynsec_broker, new) is None


async def test_ensure_calls_are_idempotent_and_leave_live_sessions_alone(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker, hub_credentials: Credentials
) -> None:
    sensor = await provisioned(access, DeviceKind.SENSOR)
    telemetry = Topics.for_device(sensor.username, Topics.TELEMETRY)
    async with (
        client(dynsec_broker, hub_credentials) as hub,
        client(dynsec_broker, sensor) as device,
    ):
        await hub.subscribe(ALL_DEVICES, qos=1)
        for _ in range(2):
            await access.ensure_base_roles()
            await access.ensure_hub_client(hub_credentials.username, hub_credentials.secret)
            await access.provision_device(sensor.username, DeviceKind.SENSOR, sensor.secret)
        await device.publish(telemetry, b"still here", qos=1)
        assert [m.payload for m in await messages_until(hub, telemetry)] == [b"still here"]

    devices = [d for d in await access.list_devices() if d.uid == sensor.username]
    assert devices == [BrokerDevice(sensor.username, DeviceKind.SENSOR, enabled=True)]


async def test_provisioning_again_repairs_kind_and_secret(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker, hub_credentials: Credentials
) -> None:
    device = await provisioned(access, DeviceKind.SENSOR)
    replaced = Credentials(device.username, new_device_secret())
    await access.provision_device(device.username, DeviceKind.SPEAKER, replaced.secret)

    assert await connect_refusal(dynsec_broker, device) == NOT_AUTHORISED
    telemetry = Topics.for_device(device.username, Topics.TELEMETRY)
    ack = Topics.for_device(device.username, Topics.ACK)
    async with client(dynsec_broker, hub_credentials) as hub:
        await hub.subscribe(ALL_DEVICES, qos=1)
        async with client(dynsec_broker, replaced) as speaker:
            await speaker.publish(telemetry, b"no longer allowed", qos=1)
            await speaker.publish(ack, b"allowed now", qos=1)
        received = await messages_until(hub, ack)
    assert [m.payload for m in received] == [b"allowed now"]
    assert BrokerDevice(device.username, DeviceKind.SPEAKER, enabled=True) in (
        await access.list_devices()
    )


async def test_reprovisioning_never_re_enables_a_disabled_device(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker
) -> None:
    camera = await provisioned(access, DeviceKind.CAMERA)
    await access.disable_device(camera.username)
    await access.provision_device(camera.username, DeviceKind.CAMERA, camera.secret)
    assert await connect_refusal(dynsec_broker, camera) == NOT_AUTHORISED


async def test_clients_the_hub_does_not_manage_are_left_alone(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker, hub_credentials: Credentials
) -> None:
    admin = dynsec_broker.admin_username
    for attempt in (
        access.provision_device(admin, DeviceKind.SENSOR, new_device_secret()),
        access.disable_device(admin),
        access.remove_device(admin),
        access.rotate_secret(hub_credentials.username, new_device_secret()),
        access.ensure_hub_client(admin, new_device_secret()),
    ):
        with pytest.raises(BrokerAccessError) as refused:
            await attempt
        assert not refused.value.retryable

    sensor = await provisioned(access, DeviceKind.SENSOR)
    with pytest.raises(BrokerAccessError, match="does not manage"):
        await access.ensure_hub_client(sensor.username, new_device_secret())
    assert await connect_refusal(dynsec_broker, sensor) is None
    assert await connect_refusal(dynsec_broker, hub_credentials) is None
    assert (
        await connect_refusal(dynsec_broker, Credentials(admin, dynsec_broker.admin_password))
        is None
    )


@pytest.mark.parametrize("uid", ["a/b", "+", "#", "$SYS", "", "x" * 129, "sensor 1", "%u"])
async def test_uids_that_would_widen_an_acl_are_refused(access: MosquittoDynsec, uid: str) -> None:
    with pytest.raises(BrokerAccessError, match="cannot be a broker identity") as refused:
        await access.provision_device(uid, DeviceKind.SENSOR, new_device_secret())
    assert not refused.value.retryable


async def test_mosquitto_2_0_does_not_substitute_usernames_in_dynsec_acls(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker, hub_credentials: Credentials
) -> None:
    """Why every device gets its own role: a shared ``%u`` role grants nothing here.

    If this fails, the broker substitutes ``%u`` and one role per kind would do.
    """
    sensor = await provisioned(access, DeviceKind.SENSOR)
    role = f"probe-substitution-{sensor.username}"
    template = Topics.for_device("%u", Topics.EVENT)
    async with access._session() as session:
        await session.check(
            {
                "command": "removeClientRole",
                "username": sensor.username,
                "rolename": f"iochub-device-{sensor.username}",
            },
            {
                "command": "createRole",
                "rolename": role,
                "acls": [{"acltype": "publishClientSend", "topic": template, "allow": True}],
            },
            {"command": "addClientRole", "username": sensor.username, "rolename": role},
        )
    event = Topics.for_device(sensor.username, Topics.EVENT)
    async with client(dynsec_broker, hub_credentials) as hub:
        await hub.subscribe(ALL_DEVICES, qos=1)
        async with client(dynsec_broker, sensor) as device:
            await device.publish(event, b"substituted", qos=1)
            await device.publish(template, b"literal", qos=1)
        received = await messages_until(hub, template)
    assert [m.payload for m in received] == [b"literal"]


async def test_list_devices_reports_kind_and_state(access: MosquittoDynsec) -> None:
    made = {
        kind: await provisioned(access, kind)
        for kind in (DeviceKind.SENSOR, DeviceKind.SPEAKER, DeviceKind.CAMERA)
    }
    await access.disable_device(made[DeviceKind.CAMERA].username)
    listed = {d.uid: d for d in await access.list_devices()}
    for kind, device in made.items():
        assert listed[device.username] == BrokerDevice(
            device.username, kind, enabled=kind is not DeviceKind.CAMERA
        )
    assert "iochub-hub-test" not in listed


async def test_identities_survive_a_broker_restart() -> None:
    with private_mosquitto_dynsec() as broker:
        access = MosquittoDynsec(
            broker.host, broker.port, broker.admin_username, broker.admin_password
        )
        speaker = await provisioned(access, DeviceKind.SPEAKER)
        sensor = await provisioned(access, DeviceKind.SENSOR)
        await access.remove_device(sensor.username)
        broker.broker.restart()
        assert await connect_refusal(broker, speaker) is None
        assert await connect_refusal(broker, sensor) == NOT_AUTHORISED
        assert [d.uid for d in await access.list_devices()] == [speaker.username]


async def test_no_secret_reaches_the_logs(
    access: MosquittoDynsec,
    dynsec_broker: DynsecBroker,
    hub_credentials: Credentials,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    uid = unique_uid(DeviceKind.SPEAKER)
    first, second, third = new_device_secret(), new_device_secret(), new_device_secret()
    await access.ensure_hub_client(hub_credentials.username, hub_credentials.secret)
    await access.provision_device(uid, DeviceKind.SPEAKER, first)
    await access.provision_device(uid, DeviceKind.SPEAKER, second)
    await access.rotate_secret(uid, third)
    assert await connect_refusal(dynsec_broker, Credentials(uid, first)) == NOT_AUTHORISED
    async with client(dynsec_broker, Credentials(uid, third)) as device:
        await access.disable_device(uid)
        assert await disconnected_within(device, 3.0)
    await access.remove_device(uid)
    wrong_admin = MosquittoDynsec(
        dynsec_broker.host, dynsec_broker.port, dynsec_broker.admin_username, first
    )
    with pytest.raises(BrokerAccessError):
        await wrong_admin.provision_device(uid, DeviceKind.SPEAKER, second)

    assert caplog.records, "nothing was logged, so the check below would prove nothing"
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    for secret in (first, second, third, hub_credentials.secret, dynsec_broker.admin_password):
        assert secret not in logged


async def test_taking_over_anothers_session_yields_none_of_its_commands(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker, hub_credentials: Credentials
) -> None:
    victim = await provisioned(access, DeviceKind.SPEAKER)
    intruder = await provisioned(access, DeviceKind.SPEAKER)
    victim_commands = Topics.for_device(victim.username, Topics.COMMAND)
    intruder_commands = Topics.for_device(intruder.username, Topics.COMMAND)

    def persistent(who: Credentials) -> aiomqtt.Client:
        return aiomqtt.Client(
            dynsec_broker.host,
            dynsec_broker.port,
            username=who.username,
            password=who.secret,
            identifier=f"session-of-{victim.username}",
            clean_session=False,
            timeout=3.0,
        )

    async with persistent(victim) as device:
        assert await subscribe(device, victim_commands) == GRANTED_QOS_1
    async with client(dynsec_broker, hub_credentials) as hub:
        await hub.publish(victim_commands, b"queued for the victim", qos=1)
        async with persistent(intruder) as takeover:
            assert await subscribe(takeover, intruder_commands) == GRANTED_QOS_1
            await hub.publish(intruder_commands, b"own", qos=1)
            received = await messages_until(takeover, intruder_commands)
    assert [m.payload for m in received] == [b"own"]


async def test_the_hub_sends_commands_but_cannot_forge_device_data(
    access: MosquittoDynsec, dynsec_broker: DynsecBroker, hub_credentials: Credentials
) -> None:
    sensor = await provisioned(access, DeviceKind.SENSOR)
    forged = Topics.for_device(sensor.username, Topics.TELEMETRY)
    command = Topics.for_device(sensor.username, Topics.COMMAND)
    async with (
        client(dynsec_broker, hub_credentials) as watcher,
        client(dynsec_broker, hub_credentials) as hub,
    ):
        await watcher.subscribe(ALL_DEVICES, qos=1)
        await hub.publish(forged, b"forged", qos=1)
        await hub.publish(command, b"command", qos=1)
        received = await messages_until(watcher, command)
    assert [(m.topic.value, m.payload) for m in received] == [(command, b"command")]
