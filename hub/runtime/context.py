"""The running hub's typed runtime data, and the shape of a slice's wiring.

Modelled on Home Assistant's typed `runtime_data` and `HassKey`: the kernel keeps the
few things every slice shares as typed attributes (settings, database, sink, services),
and each slice keeps its own running objects under keys it declares itself
(`RuntimeKey[Broadcasts]`), so a handler reads them back typed, the kernel imports no
slice, and no handler digs in an untyped bag.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from litestar import Litestar
from litestar.connection import ASGIConnection

from hub.errors import Unavailable
from hub.runtime.services import ServiceGroup
from hub.runtime.settings import CoreSettings
from hub.runtime.sink import HubSink
from hub.storage.database import Database

T = TypeVar("T")


class RuntimeKey(Generic[T]):
    """A typed name for one slice's running object."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"RuntimeKey({self.name!r})"


@dataclass
class HubRuntime:
    settings: CoreSettings
    database: Database
    services: ServiceGroup
    sink: HubSink = field(default_factory=HubSink)
    _data: dict[RuntimeKey[Any], Any] = field(default_factory=dict, repr=False)
    # (when, body) of the last readiness answer: probes may ask many times a second.
    readiness: tuple[float, dict[str, Any]] | None = None

    def put(self, key: RuntimeKey[T], value: T) -> T:
        self._data[key] = value
        return value

    def get(self, key: RuntimeKey[T]) -> T:
        try:
            value: T = self._data[key]
        except KeyError:
            raise Unavailable(f"{key.name} does not run in this hub process") from None
        return value

    def find(self, key: RuntimeKey[T]) -> T | None:
        value: T | None = self._data.get(key)
        return value

    def cached_readiness(self, max_age_s: float) -> dict[str, Any] | None:
        if self.readiness and time.monotonic() - self.readiness[0] < max_age_s:
            return self.readiness[1]
        return None


def runtime_of(where: ASGIConnection[Any, Any, Any, Any] | Litestar) -> HubRuntime:
    """The runtime of the hub serving this request (or of this app)."""
    app = where if isinstance(where, Litestar) else where.app
    runtime = app.state.get("runtime")
    if not isinstance(runtime, HubRuntime):
        raise Unavailable("the hub is still starting")
    return runtime


def slice_object(key: RuntimeKey[T]) -> Callable[[ASGIConnection[Any, Any, Any, Any]], T]:
    """A Litestar dependency that hands a handler one slice's running object."""

    def provide(request: ASGIConnection[Any, Any, Any, Any]) -> T:
        return runtime_of(request).get(key)

    return provide


async def _nothing_to_start(hub: HubRuntime) -> None:
    return None


@dataclass(frozen=True)
class Wiring:
    """What a slice adds to the hub; every slice exposes one, and the root loops over them.

    `routes` are its HTTP handlers; `start` runs in the lifespan, in slice order, and
    puts the slice's running objects into the runtime, adds its background services and
    takes on the driver news it handles from the sink.
    """

    name: str
    routes: Callable[[], Sequence[Any]] = tuple
    start: Callable[[HubRuntime], Awaitable[None]] = _nothing_to_start
