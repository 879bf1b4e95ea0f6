"""What the broadcasts slice adds to the hub: its routes and background services."""

from __future__ import annotations

import ssl
from typing import Any

from drivers.contract import Ack
from drivers.speaker.driver import SpeakerMqttDriver, SpeakerMqttSettings
from hub.broadcasts import controls
from hub.broadcasts.api import (
    AudioController,
    BroadcastController,
    SpeakerControlController,
    speaker_audio,
)
from hub.broadcasts.audio import AudioStore
from hub.broadcasts.delivery import DeliveryRecorder
from hub.broadcasts.dispatch import Dispatcher
from hub.broadcasts.groups import GroupRoster
from hub.broadcasts.scheduler import BroadcastScheduler
from hub.broadcasts.service import Broadcasts
from hub.broadcasts.sink import SpeakerSink
from hub.broadcasts.tts import EspeakNg
from hub.broadcasts.urls import AudioUrlSigner, url_key
from hub.server.context import HubContext
from hub.server.services import BackgroundService, ServiceGroup
from hub.storage.database import asyncpg_dsn


def routes() -> list[Any]:
    return [AudioController, BroadcastController, SpeakerControlController, speaker_audio]


async def add_services(ctx: HubContext, services: ServiceGroup) -> None:
    settings = ctx.settings
    own = settings.broadcasts
    pool = ctx.database.pool
    signer = AudioUrlSigner(url_key(settings.secret_key, settings.data_dir), settings.http.base_url)
    recorder = DeliveryRecorder(pool)
    runtime = Broadcasts(
        pool=pool,
        settings=own,
        audio=AudioStore(settings.data_dir / "audio"),
        signer=signer,
        tts=EspeakNg(own.tts_command, own.tts_words_per_minute, own.tts_timeout_s),
    )
    ctx.state.broadcasts = runtime

    async def record_ack(ack: Ack) -> None:
        if not await controls.record_ack(pool, ack):
            await recorder.record(ack)

    # Every hub process records the acks it hears, leader or not: a volume or stop
    # control's, or a broadcast's.
    ctx.state.sink.on_ack = record_ack
    services.add(BackgroundService("broadcast-acks", recorder.run, stop=recorder.drain))
    if not own.scheduler:
        return
    mqtt = settings.mqtt
    driver = SpeakerMqttDriver(
        SpeakerMqttSettings(
            host=mqtt.host,
            port=mqtt.port,
            client_id=f"{mqtt.client_id}-speakers",
            username=mqtt.username,
            password=mqtt.password.get_secret_value() if mqtt.password else None,
            tls_context=ssl.create_default_context() if mqtt.tls else None,
            persistent_session=True,
            subscription_group=own.speaker_subscription_group,
        )
    )
    dispatcher = Dispatcher(pool, driver, signer, own)
    roster = GroupRoster(pool, driver.assign_groups)
    sink = SpeakerSink(ctx.state.sink, dispatcher.speaker_online, roster.observe)
    scheduler = BroadcastScheduler(pool, asyncpg_dsn(ctx.database.url), own, dispatcher)
    ctx.state.speaker_driver, ctx.state.broadcast_scheduler = driver, scheduler
    # No stop hook: statuses left over are news the next status repeats.
    services.add(BackgroundService("speaker-status", sink.run))
    services.add(BackgroundService("speaker-groups", roster.run))
    services.add(BackgroundService("speaker-mqtt", lambda: driver.run(sink)))
    services.add(BackgroundService("broadcast-scheduler", scheduler.run))
