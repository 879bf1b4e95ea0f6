"""Driver and simulated speakers over a real mosquitto, audio over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import pytest

from drivers.contract import AckStage, Command, Topics
from drivers.speaker.driver import SpeakerLinkDown, SpeakerMqttDriver, SpeakerMqttSettings
from drivers.speaker.protocol import InvalidCommand, format_time
from drivers.speaker.simulator import (
    Fault,
    Latency,
    MqttVersion,
    SimulatorConfig,
    SpeakerSimulator,
    SpeakerSpec,
)
from tests.integration.speaker.support import AudioServer, RecordingSink, play, unique_uids
from tests.support.brokers import PrivateBroker, private_mosquitto

FULL_PLAY = [AckStage.RECEIVED, AckStage.DOWNLOADING, AckStage.STARTED, AckStage.FINISHED]
Hub = tuple[SpeakerMqttDriver, RecordingSink]


@contextlib.asynccontextmanager
async def fleet(
    mqtt_broker: PrivateBroker,
    uids: Sequence[str],
    faults: dict[str, frozenset[Fault]] | None = None,
    **overrides: Any,
) -> AsyncIterator[SpeakerSimulator]:
    """Simulated speakers in one ward, playing ten times faster than real time."""
    faults = faults or {}
    specs = [SpeakerSpec(uid, "ward-01", faults=faults.get(uid, frozenset())) for uid in uids]
    config = SimulatorConfig(host=mqtt_broker.host, port=mqtt_broker.port, speed=10.0)
    async with SpeakerSimulator(specs, replace(config, **overrides)) as simulator:
        yield simulator


@pytest.fixture
def jingle(audio_server: AudioServer) -> tuple[str, str]:
    return audio_server.add("jingle.mp3", b"ID3" + bytes(range(256)) * 40)


async def test_play_acknowledges_every_stage_in_order_and_on_time(
    mqtt_broker: PrivateBroker, hub_side: Hub, jingle: tuple[str, str]
) -> None:
    driver, sink = hub_side
    [uid] = unique_uids("spk-order", 1)
    async with fleet(mqtt_broker, [uid]) as simulator:
        start_at = datetime.now(UTC) + timedelta(seconds=0.4)
        command = play(uid, *jingle, duration_s=3.0, start_at=start_at)
        await driver.send(command)
        await sink.wait_for(lambda: AckStage.FINISHED in sink.stages(command.command_id))
        assert simulator.speaker(uid).playing is None

    acks = {ack.stage: ack for ack in sink.acks_for(command.command_id)}
    assert sink.stages(command.command_id) == FULL_PLAY
    # Acks carry millisecond timestamps; allow for that rounding.
    assert acks[AckStage.STARTED].time >= start_at - timedelta(milliseconds=2)
    played = acks[AckStage.FINISHED].time - acks[AckStage.STARTED].time
    assert timedelta(seconds=0.29) <= played <= timedelta(seconds=1.5)  # 3 s at speed 10


async def test_wrong_checksum_fails_the_play(
    mqtt_broker: PrivateBroker, hub_side: Hub, jingle: tuple[str, str]
) -> None:
    driver, sink = hub_side
    honest, corrupting = unique_uids("spk-sha", 2)
    url, sha256 = jingle
    async with fleet(
        mqtt_broker, [honest, corrupting], {corrupting: frozenset({Fault.CHECKSUM_MISMATCH})}
    ):
        wrong_hash = play(honest, url, "0" * 64)
        corrupted = play(corrupting, url, sha256)
        assert await driver.send_many([wrong_hash, corrupted]) == []
        await sink.wait_for(
            lambda: all(
                AckStage.FAILED in sink.stages(c.command_id) for c in (wrong_hash, corrupted)
            )
        )
        for command in (wrong_hash, corrupted):
            failed = sink.acks_for(command.command_id)[-1]
            assert failed.reason == "checksum_mismatch"
            assert sink.stages(command.command_id) == [
                AckStage.RECEIVED,
                AckStage.DOWNLOADING,
                AckStage.FAILED,
            ]


async def test_missing_audio_fails_with_download_failed(
    mqtt_broker: PrivateBroker, hub_side: Hub
) -> None:
    driver, sink = hub_side
    [uid] = unique_uids("spk-404", 1)
    async with fleet(mqtt_broker, [uid]):
        command = play(uid, "http://127.0.0.1:9/nowhere.mp3", "a" * 64)
        await driver.send(command)
        await sink.wait_for(lambda: AckStage.FAILED in sink.stages(command.command_id))
    assert sink.acks_for(command.command_id)[-1].reason == "download_failed"


async def test_emergency_preempts_a_normal_play(
    mqtt_broker: PrivateBroker, hub_side: Hub, jingle: tuple[str, str]
) -> None:
    driver, sink = hub_side
    [uid] = unique_uids("spk-emerg", 1)
    async with fleet(mqtt_broker, [uid]) as simulator:
        routine = play(uid, *jingle, duration_s=60.0)
        await driver.send(routine)
        await sink.wait_for(lambda: AckStage.STARTED in sink.stages(routine.command_id))

        ordinary_rival = play(uid, *jingle, duration_s=1.0)
        await driver.send(ordinary_rival)
        await sink.wait_for(lambda: AckStage.FAILED in sink.stages(ordinary_rival.command_id))
        assert sink.acks_for(ordinary_rival.command_id)[-1].reason == "busy"

        alarm = play(uid, *jingle, duration_s=2.0, priority="emergency")
        await driver.send(alarm)
        await sink.wait_for(lambda: AckStage.STARTED in sink.stages(alarm.command_id))
        await sink.wait_for(lambda: AckStage.PREEMPTED in sink.stages(routine.command_id))
        assert simulator.speaker(uid).playing == alarm.command_id
        await sink.wait_for(lambda: AckStage.FINISHED in sink.stages(alarm.command_id))

    assert sink.stages(routine.command_id) == [*FULL_PLAY[:3], AckStage.PREEMPTED]
    # The speaker already holds this audio (same checksum): nothing to download.
    assert sink.stages(alarm.command_id) == [
        AckStage.RECEIVED,
        AckStage.STARTED,
        AckStage.FINISHED,
    ]


async def test_stop_preempts_the_targeted_play(
    mqtt_broker: PrivateBroker, hub_side: Hub, jingle: tuple[str, str]
) -> None:
    driver, sink = hub_side
    [uid] = unique_uids("spk-stop", 1)
    async with fleet(mqtt_broker, [uid]) as simulator:
        long_play = play(uid, *jingle, duration_s=60.0)
        await driver.send(long_play)
        await sink.wait_for(lambda: AckStage.STARTED in sink.stages(long_play.command_id))
        stop = Command("stop-1-" + uid, uid, "stop", {"target": long_play.command_id})
        await driver.send(stop)
        await sink.wait_for(lambda: AckStage.PREEMPTED in sink.stages(long_play.command_id))
        await sink.wait_for(lambda: AckStage.FINISHED in sink.stages(stop.command_id))
        assert simulator.speaker(uid).playing is None


async def test_faulty_speakers_do_not_disturb_the_driver(
    mqtt_broker: PrivateBroker, hub_side: Hub, jingle: tuple[str, str]
) -> None:
    driver, sink = hub_side
    silent, chatty, refusing, healthy = unique_uids("spk-faulty", 4)
    faults = {
        silent: frozenset({Fault.NEVER_ACKS}),
        chatty: frozenset({Fault.ACKS_TWICE}),
        refusing: frozenset({Fault.REJECTS}),
    }
    async with fleet(mqtt_broker, [silent, chatty, refusing, healthy], faults) as simulator:
        commands = {uid: play(uid, *jingle, duration_s=30.0) for uid in (*faults, healthy)}
        assert await driver.send_many(commands.values()) == []
        await sink.wait_for(lambda: AckStage.STARTED in sink.stages(commands[healthy].command_id))
        await sink.wait_for(
            lambda: sink.stages(commands[chatty].command_id).count(AckStage.STARTED) == 2
        )
        await sink.wait_for(lambda: AckStage.FAILED in sink.stages(commands[refusing].command_id))

        # The silent speaker plays all the same; it just never says so.
        assert simulator.speaker(silent).playing == commands[silent].command_id
        assert sink.acks_for(commands[silent].command_id) == []
        assert sink.stages(commands[chatty].command_id) == [
            stage for stage in FULL_PLAY[:3] for _ in range(2)
        ]
        assert sink.stages(commands[refusing].command_id) == [AckStage.RECEIVED, AckStage.FAILED]
        assert sink.acks_for(commands[refusing].command_id)[-1].reason == "rejected"

        # The driver is still alive and well.
        ping = Command("ping-" + healthy, healthy, "ping")
        await driver.send(ping)
        await sink.wait_for(lambda: AckStage.FINISHED in sink.stages(ping.command_id))


async def test_acks_for_unknown_commands_and_garbage_reach_the_sink(
    mqtt_broker: PrivateBroker, hub_side: Hub
) -> None:
    _, sink = hub_side
    [uid] = unique_uids("spk-raw", 1)
    now = format_time(datetime.now(UTC))
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as rogue:
        ack = json.dumps({"command_id": "never-sent-42", "stage": "started", "at": now})
        await rogue.publish(Topics.for_device(uid, Topics.ACK), ack.encode(), qos=1)
        await rogue.publish(Topics.for_device(uid, Topics.ACK), b'{"stage":"started"}', qos=1)
        await rogue.publish(Topics.for_device(uid, Topics.ACK), b"\xff\xfe", qos=1)
        await rogue.publish(Topics.for_device(uid, Topics.STATUS), b'{"online":"yes"}', qos=1)
        await rogue.publish(Topics.for_device(uid, Topics.EVENT), b"[]", qos=1)
        await sink.wait_for(lambda: len([r for r in sink.rejections if r.device_uid == uid]) == 4)
    [unknown] = sink.acks_for("never-sent-42")
    assert (unknown.device_uid, unknown.stage) == (uid, AckStage.STARTED)
    reasons = [r.reason for r in sink.rejections if r.device_uid == uid]
    assert "missing at, command_id" in reasons[0]
    assert "not UTF-8" in reasons[1]
    assert "online must be a boolean" in reasons[2]
    assert "must be a JSON object" in reasons[3]
    assert sink.rejections[-1].raw == b"[]"


async def test_speaker_refuses_expired_unsupported_and_malformed_commands(
    mqtt_broker: PrivateBroker, hub_side: Hub
) -> None:
    _, sink = hub_side
    [uid] = unique_uids("spk-refuse", 1)
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    stale = {
        "command_id": "stale-1",
        "action": "ping",
        "issued_at": format_time(long_ago),
        "expires_at": format_time(long_ago + timedelta(minutes=5)),
    }
    future = {**stale, "command_id": "fw-1", "action": "firmware_update"}
    broken = {**stale, "command_id": "vol-1", "action": "set_volume", "volume": 300}
    async with (
        fleet(mqtt_broker, [uid]),
        aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as hub_impostor,
    ):
        for document in (stale, future, broken):
            payload = json.dumps(document).encode()
            await hub_impostor.publish(Topics.for_device(uid, Topics.COMMAND), payload, qos=1)
        await sink.wait_for(
            lambda: all(AckStage.FAILED in sink.stages(i) for i in ("stale-1", "fw-1", "vol-1"))
        )
    assert sink.acks_for("stale-1")[-1].reason == "expired"
    assert sink.acks_for("fw-1")[-1].reason == "unsupported"
    assert sink.acks_for("vol-1")[-1].reason == "rejected"


@pytest.mark.parametrize("mqtt_version", list(MqttVersion))
async def test_last_will_reports_a_killed_connection(
    mqtt_broker: PrivateBroker, hub_side: Hub, mqtt_version: MqttVersion
) -> None:
    _, sink = hub_side
    [uid] = unique_uids("spk-will", 1)
    async with fleet(mqtt_broker, [uid], mqtt_version=mqtt_version) as simulator:
        await sink.wait_for(lambda: any(b.connected for b in sink.heartbeats_of(uid)))
        await simulator.drop_connection(uid)
        await sink.wait_for(lambda: not sink.heartbeats_of(uid)[-1].connected)
        will = sink.heartbeats_of(uid)[-1]
        assert will.source == "mqtt-status"
        assert will.detail == {"retained": False}
        # It comes back by itself.
        await sink.wait_for(lambda: sink.heartbeats_of(uid)[-1].connected)


async def test_status_faults_become_events_on_change(
    mqtt_broker: PrivateBroker, hub_side: Hub, jingle: tuple[str, str]
) -> None:
    driver, sink = hub_side
    [uid] = unique_uids("spk-amp", 1)

    def amp_events() -> list[bool]:
        return [
            e.active for e in sink.events if e.device_uid == uid and e.kind == "amplifier_fault"
        ]

    async with fleet(mqtt_broker, [uid]) as simulator:
        await sink.wait_for(lambda: amp_events() == [False])
        await simulator.set_fault(uid, Fault.AMPLIFIER_FAULT)
        await sink.wait_for(lambda: amp_events() == [False, True])
        command = play(uid, *jingle)
        await driver.send(command)
        await sink.wait_for(lambda: AckStage.FAILED in sink.stages(command.command_id))
        assert sink.acks_for(command.command_id)[-1].reason == "amplifier_fault"
        ping = Command("ping-amp-" + uid, uid, "ping")
        await driver.send(ping)
        await sink.wait_for(lambda: AckStage.FINISHED in sink.stages(ping.command_id))
        await simulator.set_fault(uid, Fault.AMPLIFIER_FAULT, active=False)
        await sink.wait_for(lambda: amp_events() == [False, True, False])
    speaker_faults = [e for e in sink.events if e.device_uid == uid and e.kind == "speaker_fault"]
    assert [e.active for e in speaker_faults] == [False]


async def test_set_volume_and_reboot(mqtt_broker: PrivateBroker, hub_side: Hub) -> None:
    driver, sink = hub_side
    [uid] = unique_uids("spk-vol", 1)
    async with fleet(mqtt_broker, [uid], reboot_downtime_s=2.0) as simulator:
        volume = Command("vol-" + uid, uid, "set_volume", {"volume": 35})
        await driver.send(volume)
        await sink.wait_for(
            lambda: any(b.detail.get("volume") == 35 for b in sink.heartbeats_of(uid))
        )
        assert sink.stages(volume.command_id) == [AckStage.RECEIVED, AckStage.FINISHED]
        assert simulator.speaker(uid).volume == 35

        reboot = Command("reboot-" + uid, uid, "reboot")
        await driver.send(reboot)
        await sink.wait_for(lambda: AckStage.FINISHED in sink.stages(reboot.command_id))
    beats = sink.heartbeats_of(uid)
    connected = [beat.connected for beat in beats]
    assert False in connected
    assert connected[connected.index(False) + 1 :].count(True) >= 1
    assert any(e.kind == "boot" and e.device_uid == uid for e in sink.events)


async def test_slow_speaker_answers_late(
    mqtt_broker: PrivateBroker, hub_side: Hub, jingle: tuple[str, str]
) -> None:
    driver, sink = hub_side
    slow, brisk = unique_uids("spk-slow", 2)
    latency = Latency(median_s=0.01, sigma=0.0)
    async with fleet(mqtt_broker, [slow, brisk], {slow: frozenset({Fault.SLOW})}, latency=latency):
        sent_at = datetime.now(UTC)
        commands = [play(slow, *jingle), play(brisk, *jingle)]
        await driver.send_many(commands)
        await sink.wait_for(
            lambda: all(AckStage.RECEIVED in sink.stages(c.command_id) for c in commands)
        )
    slow_ack, brisk_ack = (sink.acks_for(c.command_id)[0] for c in commands)
    assert slow_ack.time - sent_at >= timedelta(seconds=0.19)  # 20 × 10 ms
    assert slow_ack.time - brisk_ack.time >= timedelta(seconds=0.15)


async def test_sending_without_a_connection_is_a_retryable_error(jingle: tuple[str, str]) -> None:
    driver = SpeakerMqttDriver()
    with pytest.raises(SpeakerLinkDown) as raised:
        await driver.send(play("spk-x", *jingle))
    assert raised.value.retryable
    with pytest.raises(SpeakerLinkDown):
        await driver.send_many([play("spk-x", *jingle)])


async def test_invalid_commands_are_terminal(hub_side: Hub, jingle: tuple[str, str]) -> None:
    driver, _ = hub_side
    url, sha256 = jingle
    with pytest.raises(InvalidCommand, match=r"volume 140 is outside 0\.\.100"):
        await driver.send(play("spk-x", url, sha256, volume=140))
    good, bad = play("spk-y", url, sha256), Command("c-1", "spk-y", "self_destruct")
    [failure] = await driver.send_many([good, bad])
    assert failure.command is bad
    assert not failure.retryable
    assert "self_destruct" in failure.reason


async def test_driver_reconnects_after_the_broker_restarts(jingle: tuple[str, str]) -> None:
    with private_mosquitto() as own_broker:
        settings = SpeakerMqttSettings(
            host=own_broker.host, port=own_broker.port, reconnect_initial_s=0.1
        )
        driver, sink = SpeakerMqttDriver(settings), RecordingSink()
        task = asyncio.create_task(driver.run(sink))
        try:
            async with asyncio.timeout(10):
                await driver.wait_connected()
            first_connection = driver.connections
            own_broker.restart()
            async with asyncio.timeout(10):
                await driver.wait_connected(after=first_connection)
            [uid] = unique_uids("spk-reconnect", 1)
            async with fleet(own_broker, [uid]):
                command = play(uid, *jingle)
                await driver.send(command)
                await sink.wait_for(lambda: AckStage.FINISHED in sink.stages(command.command_id))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_272_speakers_all_start_a_broadcast(
    mqtt_broker: PrivateBroker, hub_side: Hub, jingle: tuple[str, str]
) -> None:
    driver, sink = hub_side
    uids = unique_uids("spk-district", 272)
    async with fleet(mqtt_broker, uids) as simulator:
        assert simulator.mode == "per_speaker"
        commands = [play(uid, *jingle, duration_s=2.0, broadcast_id="bc-272") for uid in uids]
        assert await driver.send_many(commands) == []
        wanted = {c.command_id for c in commands}

        def started() -> set[str]:
            return {a.command_id for a in sink.acks if a.stage is AckStage.STARTED} & wanted

        await sink.wait_for(lambda: started() == wanted, within_s=20)
    assert {a.device_uid for a in sink.acks if a.command_id in wanted} == set(uids)


async def test_pooled_fleet_plays_and_goes_offline_explicitly(
    mqtt_broker: PrivateBroker, hub_side: Hub, audio_server: AudioServer
) -> None:
    driver, sink = hub_side
    uids = unique_uids("spk-pool", 60)
    jingle = audio_server.add("pooled.mp3", b"pooled audio" * 100)
    async with fleet(
        mqtt_broker, uids, connection_mode="pooled", pool_size=3, shared_downloads=True
    ) as simulator:
        assert simulator.mode == "pooled"
        commands = [play(uid, *jingle) for uid in uids]
        assert await driver.send_many(commands) == []
        finished = {c.command_id for c in commands}
        await sink.wait_for(
            lambda: finished <= {a.command_id for a in sink.acks if a.stage is AckStage.FINISHED},
            within_s=15,
        )
        # One download served the whole pooled fleet.
        assert audio_server.requests.count("/audio/pooled.mp3") == 1
        await simulator.set_fault(uids[0], Fault.OFFLINE)
        await sink.wait_for(lambda: not sink.heartbeats_of(uids[0])[-1].connected)
        await simulator.set_fault(uids[0], Fault.OFFLINE, active=False)
        await sink.wait_for(lambda: sink.heartbeats_of(uids[0])[-1].connected)


async def test_a_subscription_group_splits_acks_between_hub_processes(
    mqtt_broker: PrivateBroker, jingle: tuple[str, str]
) -> None:
    settings = SpeakerMqttSettings(
        host=mqtt_broker.host, port=mqtt_broker.port, subscription_group="hub-workers"
    )
    drivers = [SpeakerMqttDriver(settings), SpeakerMqttDriver(settings)]
    together = asyncio.Condition()
    sinks = [RecordingSink(changed=together), RecordingSink(changed=together)]
    tasks = [asyncio.create_task(d.run(s)) for d, s in zip(drivers, sinks, strict=True)]
    try:
        async with asyncio.timeout(10):
            for driver in drivers:
                await driver.wait_connected()
        uids = unique_uids("spk-shared", 20)
        async with fleet(mqtt_broker, uids):
            commands = [play(uid, *jingle) for uid in uids]
            assert await drivers[0].send_many(commands) == []
            await sinks[0].wait_for(
                lambda: sum(len(s.acks) for s in sinks) == 4 * len(commands), within_s=10
            )
        received = [len(sink.acks) for sink in sinks]
        # Four stages each, every ack delivered once, and both workers took a share.
        assert sum(received) == 80
        assert all(count > 0 for count in received)
        assert {a.stage for s in sinks for a in s.acks} == set(FULL_PLAY)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
