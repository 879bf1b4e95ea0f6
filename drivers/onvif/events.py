"""Motion and tamper events from ONVIF PullPoint subscriptions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from drivers.contract import DecodeError, DeviceEvent, DriverSink, Rejected
from drivers.onvif.client import (
    EVENTS_NS,
    PULLPOINT_XADDR_KEY,
    CameraAuthError,
    CameraError,
    CameraTarget,
    camera_errors,
    event_topics,
    open_camera,
    optional,
    pin_to_host,
    read_clock,
    sign_on_camera_clock,
)

log = logging.getLogger(__name__)

SOURCE = "onvif-events"


@dataclass(frozen=True, slots=True)
class TopicRule:
    kind: str
    state_items: tuple[str, ...]  # the tt:Data SimpleItem names that carry on/off


# Topics as cameras publish them, without namespace prefixes.
EVENT_TOPICS: dict[str, TopicRule] = {
    "RuleEngine/CellMotionDetector/Motion": TopicRule("motion", ("IsMotion",)),
    "RuleEngine/MotionRegionDetector/Motion": TopicRule("motion", ("State", "IsMotion")),
    "VideoSource/MotionAlarm": TopicRule("motion", ("State",)),
    "VideoSource/GlobalSceneChange/ImagingService": TopicRule("tamper", ("State",)),
    "VideoSource/GlobalSceneChange/AnalyticsService": TopicRule("tamper", ("State",)),
    "RuleEngine/TamperDetector/Tamper": TopicRule("tamper", ("IsTamper", "State")),
}
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def normalize_topic(topic: str) -> str:
    """``tns1:RuleEngine/CellMotionDetector/Motion`` -> ``RuleEngine/CellMotionDetector/Motion``."""
    segments = [segment.rpartition(":")[2] for segment in topic.strip().split("/")]
    return "/".join(segment for segment in segments if segment and segment != ".")


def decode_notification(device_uid: str, message: Any, received_at: datetime) -> DeviceEvent | None:
    """The DeviceEvent in one wsnt:NotificationMessage; None for topics the hub does not track."""
    topic = getattr(getattr(message, "Topic", None), "_value_1", None)
    if not isinstance(topic, str) or not topic.strip():
        raise DecodeError("notification without a topic")
    normalized = normalize_topic(topic)
    rule = EVENT_TOPICS.get(normalized)
    if rule is None:
        return None
    body = getattr(getattr(message, "Message", None), "_value_1", None)
    if body is None:
        raise DecodeError(f"{normalized} notification without a tt:Message")
    if _attribute(body, "PropertyOperation") == "Deleted":
        return None
    data = _simple_items(body, "Data")
    value = next((data[name] for name in rule.state_items if name in data), None)
    if value is None:
        raise DecodeError(
            f"{normalized} notification carries none of {', '.join(rule.state_items)}"
        )
    if value.lower() in _TRUE:
        active = True
    elif value.lower() in _FALSE:
        active = False
    else:
        raise DecodeError(f"{normalized} state {value!r} is not a boolean")
    happened_at = _attribute(body, "UtcTime")
    if isinstance(happened_at, str):
        try:
            happened_at = datetime.fromisoformat(happened_at.replace("Z", "+00:00"))
        except ValueError:
            raise DecodeError(f"{normalized} UtcTime {happened_at!r} is not a time") from None
    if not isinstance(happened_at, datetime):
        happened_at = received_at
    elif happened_at.tzinfo is None:
        happened_at = happened_at.replace(tzinfo=UTC)
    return DeviceEvent(
        device_uid,
        happened_at.astimezone(UTC),
        rule.kind,
        active,
        {
            "topic": normalized,
            "source": _simple_items(body, "Source"),
            "operation": _attribute(body, "PropertyOperation"),
        },
    )


def _attribute(body: Any, name: str) -> Any:
    """An attribute of tt:Message, whether zeep parsed it into an object or left an element."""
    if isinstance(getattr(body, "tag", None), str):
        return body.get(name)
    return getattr(body, name, None)


def _simple_items(body: Any, section: str) -> dict[str, str]:
    if isinstance(getattr(body, "tag", None), str):
        parent = next((c for c in body if str(c.tag).endswith("}" + section)), None)
        items = [] if parent is None else [c for c in parent if str(c.tag).endswith("}SimpleItem")]
        pairs = [(item.get("Name"), item.get("Value")) for item in items]
    else:
        items = getattr(getattr(body, section, None), "SimpleItem", None) or []
        pairs = [(getattr(item, "Name", None), getattr(item, "Value", None)) for item in items]
    return {
        str(name): str(value) for name, value in pairs if name is not None and value is not None
    }


@dataclass(frozen=True, slots=True)
class PullPointSettings:
    termination_s: float = 60.0  # lifetime asked for a subscription
    renew_fraction: float = 0.5  # renew once this share of the lifetime has passed
    pull_wait_s: float = 10.0  # how long one PullMessages may wait for events
    message_limit: int = 32
    call_timeout_s: float = 10.0  # budget of any call, on top of the pull wait
    retry_initial_s: float = 2.0
    retry_max_s: float = 120.0
    auth_retry_s: float = 900.0  # credentials rejected: nobody will fix that in seconds
    recheck_s: float = 3600.0  # the camera offers no PullPoint for motion or tamper


def _duration(seconds: float) -> str:
    """An xs:duration in seconds, such as PT60S or PT0.5S."""
    amount = f"{max(seconds, 0.0):.3f}".rstrip("0").rstrip(".")
    return f"PT{amount}S"


class SubscriptionEnded(CameraError):
    """The camera's subscription reached its termination time without a renewal."""


class PullPointSubscriber:
    """Keeps one camera's PullPoint subscription alive and turns its messages into events.

    Only state changes go to the sink: a camera repeating ``motion active=true`` on every
    pull (or re-sending its Initialized states after a re-subscription) is told once.
    Pulls are paced by the Timeout the hub asks for, whatever the camera does with it.
    """

    def __init__(self, target: CameraTarget, settings: PullPointSettings | None = None) -> None:
        self.target = target
        self.settings = settings or PullPointSettings()
        self.subscriptions_created = 0
        self.renewals = 0
        self.pulls = 0
        self.repeats_dropped = 0
        self._retry_delay = self.settings.retry_initial_s
        self._states: dict[tuple[str, str], bool] = {}

    async def run(self, sink: DriverSink) -> None:
        """Subscribe, pull and renew until cancelled; re-subscribe after any failure."""
        where = f"{self.target.host}:{self.target.port}"
        while True:
            try:
                await self._subscribe_and_pull(sink)
                wait = self.settings.recheck_s
            except CameraAuthError as error:
                log.warning("events from %s stopped: %s", self.target.device_uid, error)
                wait = self.settings.auth_retry_s
            except CameraError as error:
                log.info(
                    "events from %s (%s) interrupted: %s", self.target.device_uid, where, error
                )
                wait = self._back_off()
            except Exception:
                log.exception(
                    "events from %s (%s) failed unexpectedly", self.target.device_uid, where
                )
                wait = self._back_off()
            await asyncio.sleep(wait)

    def _back_off(self) -> float:
        wait = self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self.settings.retry_max_s)
        return wait

    async def _subscribe_and_pull(self, sink: DriverSink) -> None:
        target, settings = self.target, self.settings
        with camera_errors(target.host, target.port):
            async with open_camera(
                target.host, target.port, target.username, target.password
            ) as camera:
                async with asyncio.timeout(settings.call_timeout_s):
                    clock = await read_clock(camera)
                    await sign_on_camera_clock(camera, clock.drift_s)
                    offered = await self._offered(camera)
                if not offered:
                    log.info(
                        "camera %s offers no PullPoint for motion or tamper", target.device_uid
                    )
                    return
                async with asyncio.timeout(settings.call_timeout_s):
                    subscription, pullpoint, lifetime = await self._create(camera)
                try:
                    await self._pull(sink, subscription, pullpoint, lifetime)
                finally:
                    # Best effort: an expired or lost subscription cannot be unsubscribed,
                    # and the camera drops it at its termination time anyway.
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(2.0):
                            await subscription.Unsubscribe()

    async def _pull(
        self, sink: DriverSink, subscription: Any, pullpoint: Any, lifetime: float
    ) -> None:
        """Pull until the subscription ends; renew it per its termination time.

        WS-BaseNotification (Renew): a subscription lives until its TerminationTime. A
        failed Renew does not end it: the hub retries with back-off and pulls meanwhile;
        only when the termination time passes does it re-subscribe (after back-off too).
        """
        target, settings = self.target, self.settings
        loop = asyncio.get_running_loop()
        now = loop.time()
        ends_at = now + lifetime
        renew_at = now + lifetime * settings.renew_fraction
        renew_delay = settings.retry_initial_s
        while True:
            now = loop.time()
            if now >= ends_at:
                raise SubscriptionEnded(
                    f"the subscription on camera {target.device_uid} reached its termination "
                    "time without a renewal"
                )
            if now >= renew_at:
                try:
                    with camera_errors(target.host, target.port, "Renew"):
                        async with asyncio.timeout(settings.call_timeout_s):
                            answer = await subscription.Renew(
                                {"TerminationTime": _duration(settings.termination_s)}
                            )
                except CameraAuthError:
                    raise
                except CameraError as error:
                    log.info("renewing events of %s failed: %s", target.device_uid, error)
                    renew_at = min(loop.time() + renew_delay, ends_at)
                    renew_delay = min(renew_delay * 2, settings.retry_max_s)
                else:
                    self.renewals += 1
                    lifetime = self._granted(answer)
                    ends_at = loop.time() + lifetime
                    renew_at = loop.time() + lifetime * settings.renew_fraction
                    renew_delay = settings.retry_initial_s
                    # A subscription that renews is a healthy one: failures start over.
                    self._retry_delay = settings.retry_initial_s
                continue
            wait = max(0.0, min(settings.pull_wait_s, renew_at - now, ends_at - now))
            started = loop.time()
            with camera_errors(target.host, target.port, "PullMessages"):
                async with asyncio.timeout(wait + settings.call_timeout_s):
                    result = await pullpoint.PullMessages(
                        {"Timeout": _duration(wait), "MessageLimit": settings.message_limit}
                    )
            self.pulls += 1
            if _termination_reported(result):
                # The camera's own word on when the subscription ends (some extend it on pulls).
                ends_at = loop.time() + self._granted(result)
            messages = list(getattr(result, "NotificationMessage", None) or [])
            changed = await self._deliver(sink, messages)
            early = wait - (loop.time() - started)
            if early > 0 and (not changed or len(messages) > settings.message_limit):
                # ONVIF Core, PullMessages: the device waits up to Timeout for messages. A camera
                # that answers at once with nothing new must not be polled in a tight loop.
                await asyncio.sleep(early)

    async def _offered(self, camera: Any) -> bool:
        where = f"{self.target.host}:{self.target.port}"
        device = await camera.create_devicemgmt_service()
        capabilities = await optional(
            device.GetCapabilities({"Category": "Events"}), "event capabilities", where
        )
        events = getattr(capabilities, "Events", None)
        if events is None or not getattr(events, "WSPullPointSupport", False):
            return False
        camera.xaddrs[EVENTS_NS] = pin_to_host(str(events.XAddr), self.target.host)
        service = await camera.create_events_service()
        topics = event_topics(await optional(service.GetEventProperties(), "event topics", where))
        # A camera that does not list its topics may still send the ones we want.
        return not topics or any(normalize_topic(topic) in EVENT_TOPICS for topic in topics)

    async def _create(self, camera: Any) -> tuple[Any, Any, float]:
        service = await camera.create_events_service()
        result = await service.CreatePullPointSubscription(
            {"InitialTerminationTime": _duration(self.settings.termination_s)}
        )
        address = str(result.SubscriptionReference.Address._value_1)
        camera.xaddrs[PULLPOINT_XADDR_KEY] = pin_to_host(address, self.target.host)
        pullpoint = await camera.create_pullpoint_service()
        subscription = await camera.create_subscription_service("PullPointSubscription")
        self.subscriptions_created += 1
        return subscription, pullpoint, self._granted(result)

    def _granted(self, answer: Any) -> float:
        """The lifetime the camera granted, in seconds (from its CurrentTime and
        TerminationTime, both on its own clock), or the one asked for."""
        current = getattr(answer, "CurrentTime", None)
        termination = getattr(answer, "TerminationTime", None)
        if isinstance(current, datetime) and isinstance(termination, datetime):
            granted = (termination - current).total_seconds()
            if granted > 0:
                return granted
        return self.settings.termination_s

    async def _deliver(self, sink: DriverSink, messages: Sequence[Any]) -> bool:
        """Hand over the state changes among ``messages``; True if there was any."""
        uid = self.target.device_uid
        received_at = datetime.now(UTC)
        changed = False
        for message in messages:
            try:
                event = decode_notification(uid, message, received_at)
            except DecodeError as error:
                raw = str(message).encode("utf-8", "replace")[:8192]
                await _hand_over(sink.rejected(Rejected(SOURCE, raw, str(error), uid, received_at)))
                continue
            if event is None:
                continue
            key = (event.kind, _state_key(event))
            if self._states.get(key) == event.active:
                self.repeats_dropped += 1
                continue
            self._states[key] = event.active
            changed = True
            await _hand_over(sink.event(event))
        return changed


def _termination_reported(answer: Any) -> bool:
    return isinstance(getattr(answer, "CurrentTime", None), datetime) and isinstance(
        getattr(answer, "TerminationTime", None), datetime
    )


def _state_key(event: DeviceEvent) -> str:
    """Which property an event is the state of: its topic and its source (rule, channel)."""
    source = event.data.get("source") or {}
    items = sorted(source.items()) if isinstance(source, dict) else []
    return f"{event.data.get('topic')}|{items}"


async def _hand_over(delivery: Awaitable[None]) -> None:
    try:
        await delivery
    except Exception:
        log.warning("the hub did not accept a camera event", exc_info=True)


class CameraEventsDriver:
    """One PullPoint subscriber per camera in the list, kept in step with the list."""

    name = "onvif-events"

    def __init__(
        self,
        cameras: Callable[[], Awaitable[Sequence[CameraTarget]]],
        *,
        refresh_interval: float = 60.0,
        settings: PullPointSettings | None = None,
    ) -> None:
        self._cameras = cameras
        self._refresh_interval = refresh_interval
        self._settings = settings or PullPointSettings()
        self.subscribers: dict[CameraTarget, PullPointSubscriber] = {}

    async def run(self, sink: DriverSink) -> None:
        tasks: dict[CameraTarget, asyncio.Task[None]] = {}
        stopping: set[asyncio.Task[None]] = set()  # unsubscribing from cameras that left the list
        try:
            while True:
                try:
                    wanted = set(await self._cameras())
                except Exception:
                    log.exception("could not get the list of cameras; keeping the current ones")
                    wanted = set(tasks)
                for target in set(tasks) - wanted:
                    task = tasks.pop(target)
                    task.cancel()
                    stopping.add(task)
                    task.add_done_callback(stopping.discard)
                    del self.subscribers[target]
                for target in wanted - set(tasks):
                    subscriber = PullPointSubscriber(target, self._settings)
                    self.subscribers[target] = subscriber
                    tasks[target] = asyncio.create_task(
                        subscriber.run(sink), name=f"onvif-events:{target.device_uid}"
                    )
                await asyncio.sleep(self._refresh_interval)
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), *stopping, return_exceptions=True)
