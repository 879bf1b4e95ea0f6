"""What the broadcasts slice adds to the hub: its routes and background services.

The speaker driver is not built here: the composition root puts a factory of
`SpeakerLink`s into the runtime (SPEAKER_LINKS), so the slice knows the protocol only.
"""

from __future__ import annotations

from typing import Any

from drivers.contract import Ack
from hub.broadcasts import controls
from hub.broadcasts.api import (
    AudioController,
    BroadcastController,
    SpeakerControlController,
    speaker_audio,
)
from hub.broadcasts.audio import AudioStore
from hub.broadcasts.delivery import DeliveryRecorder
from hub.broadcasts.dispatch import SPEAKER_LINKS, SPEAKERS, Dispatcher
from hub.broadcasts.groups import GroupRoster
from hub.broadcasts.scheduler import BroadcastScheduler
from hub.broadcasts.service import BROADCASTS, Broadcasts
from hub.broadcasts.settings import BroadcastSettings
from hub.broadcasts.sink import SpeakerSink
from hub.broadcasts.tts import EspeakNg
from hub.broadcasts.urls import AudioUrlSigner, url_key
from hub.runtime import BackgroundService, HubRuntime, RuntimeKey, Wiring
from hub.storage.database import asyncpg_dsn

SCHEDULER: RuntimeKey[BroadcastScheduler] = RuntimeKey("the broadcast scheduler")


def routes() -> list[Any]:
    return [AudioController, BroadcastController, SpeakerControlController, speaker_audio]


async def start(hub: HubRuntime) -> None:
    settings = hub.settings
    own = settings.group(BroadcastSettings)
    pool = hub.database.pool
    signer = AudioUrlSigner(url_key(settings.secret_key, settings.data_dir), settings.http.base_url)
    recorder = DeliveryRecorder(pool)
    hub.put(
        BROADCASTS,
        Broadcasts(
            pool=pool,
            settings=own,
            audio=AudioStore(settings.data_dir / "audio"),
            signer=signer,
            tts=EspeakNg(own.tts_command, own.tts_words_per_minute, own.tts_timeout_s),
        ),
    )

    async def record_ack(ack: Ack) -> None:
        if not await controls.record_ack(pool, ack):
            await recorder.record(ack)

    # Every hub process records the acks it hears, leader or not: a volume or stop
    # control's, or a broadcast's.
    hub.sink.listen_to_acks(record_ack)
    hub.services.add(BackgroundService("broadcast-acks", recorder.run, stop=recorder.drain))
    if not own.scheduler:
        return
    driver = hub.put(SPEAKERS, hub.get(SPEAKER_LINKS)(own))
    dispatcher = Dispatcher(pool, driver, signer, own)
    roster = GroupRoster(pool, driver.assign_groups)
    sink = SpeakerSink(hub.sink, dispatcher.speaker_online, roster.observe)
    scheduler = hub.put(
        SCHEDULER, BroadcastScheduler(pool, asyncpg_dsn(hub.database.url), own, dispatcher)
    )
    # No stop hook: statuses left over are news the next status repeats.
    hub.services.add(BackgroundService("speaker-status", sink.run))
    hub.services.add(BackgroundService("speaker-groups", roster.run))
    hub.services.add(BackgroundService("speaker-mqtt", lambda: driver.run(sink)))
    hub.services.add(BackgroundService("broadcast-scheduler", scheduler.run))


wiring = Wiring("broadcasts", routes, start)
