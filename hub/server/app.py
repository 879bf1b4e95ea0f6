"""The composition root: settings in, a running Litestar app out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import openapi_ui_bundles.swagger_ui
from litestar import Litestar, Request
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.logging import LoggingConfig
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from hub.alerts.wiring import wiring as alerts
from hub.auth.middleware import HubAuthentication
from hub.auth.principal import Principal
from hub.auth.wiring import wiring as auth
from hub.broadcasts.wiring import wiring as broadcasts
from hub.cameras.wiring import wiring as cameras
from hub.devices.wiring import wiring as devices
from hub.firmware.wiring import wiring as firmware
from hub.health.wiring import wiring as health
from hub.integrations.wiring import wiring as integrations
from hub.runtime import EXCEPTION_HANDLERS, HubRuntime, ServiceGroup, Wiring
from hub.server import drivers, log_escaping, log_format, metrics
from hub.server.allow import AllowEveryMethod
from hub.server.datetimes import StrictDateTimeQuery
from hub.server.health import healthz, readyz
from hub.server.openapi import document_problems
from hub.server.request_context import RequestContext
from hub.server.security import SecurityHeaders
from hub.server.settings import Settings
from hub.server.text_input import RefuseNulInput
from hub.storage import database
from hub.telemetry.wiring import wiring as telemetry
from hub.web import install_i18n
from hub.web.wiring import wiring as web

log = logging.getLogger("hub.server")
VERSION = "0.1.0"

# Every slice of the hub, in the order they start (background services stop in reverse).
SLICES: tuple[Wiring, ...] = (
    auth,
    devices,
    telemetry,
    health,
    alerts,
    integrations,
    broadcasts,
    cameras,
    firmware,
    web,
)

# Open live-update streams (GET /events, up to 2 min each) would hold a stopping process
# that long: uvicorn waits this many seconds for them, then closes them.
GRACEFUL_SHUTDOWN_S = 5


def principal(request: Request[Principal, Any, Any]) -> Principal:
    return request.user


async def start_hub(settings: Settings, db: database.Database) -> HubRuntime:
    """Every slice started over one database, and the drivers that feed the hub's sink."""
    hub = HubRuntime(
        settings=settings,
        database=db,
        services=ServiceGroup(stop_timeout_s=settings.shutdown_timeout_s),
    )
    drivers.provide(hub, settings)
    for part in SLICES:
        await part.start(hub)
    drivers.add_sensor_drivers(hub, settings)
    return hub


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings()
    wanted = settings.database
    log_escaping.install()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        db = await database.connect(
            wanted.url.get_secret_value(),
            min_size=wanted.pool_min_size,
            max_size=wanted.pool_max_size,
            statement_timeout_ms=wanted.statement_timeout_ms,
            auto_migrate=wanted.auto_migrate,
            timescaledb=wanted.timescaledb,
        )
        try:
            hub = await start_hub(settings, db)
        except BaseException:
            await db.close()
            raise
        app.state.runtime = hub
        await hub.services.start()
        unwatch = metrics.watch_running_hub(hub)
        log.info(
            "iochub %s serving on %s (time-series backend: %s)",
            VERSION,
            settings.http.base_url,
            db.backend,
        )
        try:
            yield
        finally:
            unwatch()
            await hub.services.stop()
            await db.close()

    # Swagger UI served by the hub itself: operators' networks often have no internet.
    swagger_dir = Path(openapi_ui_bundles.swagger_ui.static_path)
    web_dir = resources.files("hub.web")
    openapi = OpenAPIConfig(
        title="iochub",
        version=VERSION,
        description="Device hub for a district Intelligent Operations Center. Authenticate "
        "with `Authorization: Bearer <API token>` (create one with `iochub users token issue`) or "
        "a browser session.",
        path="/api",
        render_plugins=[
            SwaggerRenderPlugin(
                js_url="/static/swagger/swagger-ui-bundle.js",
                css_url="/static/swagger/swagger-ui.css",
                standalone_preset_js_url="/static/swagger/swagger-ui-standalone-preset.js",
                path="/docs",
            )
        ],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer"),
                "session": SecurityScheme(
                    type="apiKey", name="iochub_session", security_scheme_in="cookie"
                ),
            }
        ),
        security=[{"bearer": []}, {"session": []}],
    )
    app = Litestar(
        route_handlers=[
            healthz,
            readyz,
            metrics.prometheus_metrics,
            *(handler for part in SLICES for handler in part.routes()),
            create_static_files_router(
                "/static/swagger",
                [swagger_dir],
                opt={"exclude_from_auth": True},
                include_in_schema=False,
            ),
            create_static_files_router(
                "/static",
                [Path(str(web_dir.joinpath("static")))],
                opt={"exclude_from_auth": True},
                include_in_schema=False,
                name="console-static",
            ),
        ],
        dependencies={"principal": Provide(principal, sync_to_thread=False)},
        middleware=[
            SecurityHeaders(),
            AllowEveryMethod(),
            RefuseNulInput(),
            StrictDateTimeQuery(),
            DefineMiddleware(HubAuthentication, exclude=["^/static/"]),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        openapi_config=openapi,
        cors_config=CORSConfig(allow_origins=settings.http.cors_origins, allow_credentials=False)
        if settings.http.cors_origins
        else None,
        template_config=TemplateConfig(
            directory=Path(str(web_dir.joinpath("templates"))),
            engine=JinjaTemplateEngine,
            engine_callback=lambda jinja: install_i18n(jinja.engine),
        ),
        request_max_body_size=settings.http.max_request_bytes,
        # The typed runtime (hub.runtime.HubRuntime) lands under "runtime" in the lifespan;
        # nothing else is kept in the state.
        state=State(),
        logging_config=LoggingConfig(
            formatters=log_format.litestar_formatters(settings.log_format),
            root={"level": settings.log_level, "handlers": ["queue_listener"]},
            log_exceptions="debug",
            disable_stack_trace={400, 401, 403, 404, 409, 413, 422, 429},
        ),
        debug=False,
    )
    # Outside Litestar's own error mapping, so answers it makes (401 from authentication,
    # problem+json) carry the request id and are counted with their real status.
    app.asgi_handler = RequestContext(metrics.HttpMetrics(app.asgi_handler))
    document_problems(app)
    return app
