"""The composition root: settings in, a running Litestar app out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
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

from drivers.sensors.coap import SensorCoapDriver
from drivers.sensors.mqtt import SensorMqttDriver
from drivers.sensors.oscore import OscoreAuthoriser
from drivers.sensors.payloads import PayloadLimits
from hub.alerts.api import AlertController, RuleController
from hub.alerts.engine import AlertEngine
from hub.auth.api import AuthController, LoginThrottle, UserController
from hub.auth.audit_api import AuditController
from hub.auth.middleware import HubAuthentication
from hub.auth.principal import Principal
from hub.auth.service import LoginPolicy
from hub.broadcasts import wiring as broadcasts
from hub.cameras import wiring as cameras
from hub.devices import ProfileBook, keep_fresh
from hub.devices.api import DeviceController
from hub.devices.broker import (
    BrokerAccess,
    BrokerAccessError,
    DatabaseIdentities,
    MosquittoDynsec,
    NoBrokerAccess,
)
from hub.devices.coap_api import CoapCredentialController
from hub.devices.coap_keys import CoapKeyring
from hub.devices.credentials import DeviceCredentials
from hub.firmware import wiring as firmware
from hub.health.api import HealthController
from hub.health.monitor import HealthMonitor
from hub.integrations import wiring as integrations
from hub.server import log_escaping, log_format, metrics
from hub.server.allow import AllowEveryMethod
from hub.server.context import HubContext
from hub.server.datetimes import StrictDateTimeQuery
from hub.server.errors import EXCEPTION_HANDLERS
from hub.server.health import healthz, readyz
from hub.server.openapi import document_problems
from hub.server.request_context import RequestContext
from hub.server.security import SecurityHeaders
from hub.server.services import BackgroundService, ServiceGroup
from hub.server.settings import Settings
from hub.server.sink import HubSink
from hub.server.text_input import RefuseNulInput
from hub.storage import database
from hub.storage.leadership import led
from hub.telemetry.api import QuarantineController, TelemetryController
from hub.telemetry.directory import DeviceDirectory
from hub.telemetry.ingest import BACKFILL_LIMIT, AgeLimit, Quarantine, TelemetryIngest
from hub.telemetry.jobs import JobSettings, JobSupervisor
from hub.telemetry.policies import RetentionPolicy, apply_timescaledb
from hub.telemetry.store import ReadingWriter
from hub.web.broadcasts import BroadcastConsoleController
from hub.web.cameras import CameraConsoleController
from hub.web.console import ConsoleController

log = logging.getLogger("hub.server")
VERSION = "0.1.0"


def principal(request: Request[Principal, Any, Any]) -> Principal:
    return request.user


def retention_policy(settings: Settings) -> RetentionPolicy:
    t = settings.telemetry
    return RetentionPolicy(
        raw_days=t.raw_retention_days,
        rollup_1m_days=t.rollup_1m_retention_days,
        rollup_1h_days=t.rollup_1h_retention_days,
        compress_after_days=t.compress_after_days,
    )


def broker_access(settings: Settings) -> BrokerAccess:
    mqtt = settings.mqtt
    if mqtt.identities == "database":
        return DatabaseIdentities()
    if mqtt.admin_username and mqtt.admin_password:
        return MosquittoDynsec(mqtt.host, mqtt.port, mqtt.admin_username, mqtt.admin_password)
    return NoBrokerAccess(
        "no broker admin configured (IOCHUB_MQTT__ADMIN_USERNAME/PASSWORD): "
        "devices are not confined to their own topics by the broker"
    )


async def build_services(settings: Settings, state: State) -> ServiceGroup:
    """Every background service of the hub, in start order (they stop in reverse)."""
    db: database.Database = state.database
    services = ServiceGroup(stop_timeout_s=settings.shutdown_timeout_s)
    t = settings.telemetry
    policy = retention_policy(settings)
    if db.backend == "timescaledb":
        await apply_timescaledb(db.pool, policy)
    jobs = JobSupervisor(
        db.pool,
        database.asyncpg_dsn(settings.database.url.get_secret_value()),
        db.backend,
        policy,
        JobSettings(
            check_every_s=t.jobs_check_interval_s,
            takeover_after_failures=t.jobs_takeover_after_failures,
            plain_retention_every_s=t.plain_retention_interval_s,
            plain_rollup_every_s=t.plain_rollup_interval_s,
        ),
    )
    state.maintenance_jobs = jobs
    services.add(BackgroundService("maintenance-jobs", jobs.run))

    writer = ReadingWriter(
        db.pool,
        batch_rows=t.batch_rows,
        batch_age_s=t.batch_age_ms / 1000,
        max_queued_rows=t.max_queued_rows,
        writers=t.writers,
    )
    directory = DeviceDirectory(db.pool)
    profiles = ProfileBook()
    await profiles.refresh(db.pool)
    services.add(BackgroundService("device-profiles", lambda: keep_fresh(profiles, db.pool)))
    ingest = TelemetryIngest(
        directory,
        writer,
        Quarantine(db.pool),
        profiles=profiles,
        age=AgeLimit(timedelta(days=t.max_age_days)),
    )
    device_limits = PayloadLimits(max_age=BACKFILL_LIMIT)
    health = HealthMonitor(db.pool, directory, settings.health)
    engine = AlertEngine(db.pool)
    await engine.refresh()
    writer.on_stored += [health.readings_stored, engine.readings_stored]
    health.on_tick.append(engine.health_tick)
    health.on_flapping.append(engine.flapping_changed)
    sink = HubSink(telemetry=ingest, health=health)
    state.writer, state.sink, state.directory = writer, sink, directory
    state.health, state.alert_engine = health, engine
    services.add(BackgroundService("telemetry-writer", writer.run, stop=writer.drain))
    # Absence ticks (late, offline) and the periodic rule evaluation run in one process at a
    # time; every process still assesses the heartbeats and readings it receives itself.
    services.add(
        BackgroundService(
            "health-monitor",
            led(database.asyncpg_dsn(db.url), "health-ticks", health.run),
        )
    )

    mqtt = settings.mqtt
    password = mqtt.password.get_secret_value() if mqtt.password else None
    broker = broker_access(settings)
    log.info("device identities: %s", broker.describe())
    try:
        await broker.ensure_base_roles()
        if mqtt.username and password:
            await broker.ensure_hub_client(mqtt.username, password)
    except BrokerAccessError as exc:
        # The hub still serves; provisioning calls will say the broker is away.
        log.error("the broker's device identities could not be set up: %s", exc)
    state.credentials = DeviceCredentials(broker)
    if t.mqtt_ingest:
        sensors = SensorMqttDriver(
            mqtt.host,
            mqtt.port,
            client_id=f"{mqtt.client_id}-sensors",
            username=mqtt.username,
            password=password,
            shared_group=mqtt.shared_group,
            batch_size=t.mqtt_batch_messages,
            max_batches=t.mqtt_batches_in_flight,
            limits=device_limits,
        )
        services.add(BackgroundService("sensor-mqtt", lambda: sensors.run(sink)))
        state.sensor_driver = sensors
    coap_keys = CoapKeyring(settings.secret_box())
    state.coap_keys = coap_keys
    if settings.coap.enabled:
        coap = SensorCoapDriver(
            settings.coap.host,
            settings.coap.port,
            limits=device_limits,
            authorise=OscoreAuthoriser(required=settings.coap.require_oscore),
            security_contexts=coap_keys.registry,
        )
        services.add(
            BackgroundService("sensor-coap", lambda: coap_keys.serve(lambda: coap.run(sink)))
        )
    ctx = HubContext(settings=settings, database=db, state=state)
    await integrations.add_services(ctx, services)
    await broadcasts.add_services(ctx, services)
    await cameras.add_services(ctx, services)
    await firmware.add_services(ctx, services)
    return services


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings()
    db = settings.database
    log_escaping.install()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.database = await database.connect(
            db.url.get_secret_value(),
            min_size=db.pool_min_size,
            max_size=db.pool_max_size,
            statement_timeout_ms=db.statement_timeout_ms,
            auto_migrate=db.auto_migrate,
            timescaledb=db.timescaledb,
        )
        services = await build_services(settings, app.state)
        app.state.services = services
        await services.start()
        unwatch = metrics.watch_running_hub(app.state)
        log.info(
            "iochub %s serving on %s (time-series backend: %s)",
            VERSION,
            settings.http.base_url,
            app.state.database.backend,
        )
        try:
            yield
        finally:
            unwatch()
            await services.stop()
            await app.state.database.close()

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
            AuthController,
            UserController,
            DeviceController,
            CoapCredentialController,
            AuditController,
            TelemetryController,
            HealthController,
            AlertController,
            RuleController,
            QuarantineController,
            metrics.prometheus_metrics,
            *integrations.routes(),
            *broadcasts.routes(),
            *cameras.routes(),
            *firmware.routes(),
            ConsoleController,
            BroadcastConsoleController,
            CameraConsoleController,
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
            directory=Path(str(web_dir.joinpath("templates"))), engine=JinjaTemplateEngine
        ),
        request_max_body_size=settings.http.max_request_bytes,
        state=State(
            {
                "settings": settings,
                "cookie_secure": settings.auth.cookie_secure,
                "login_policy": LoginPolicy(
                    max_failures=settings.auth.login_max_failures,
                    lockout=timedelta(minutes=settings.auth.lockout_minutes),
                    failure_delay_s=settings.auth.login_delay_ms / 1000,
                    session_ttl=timedelta(minutes=settings.auth.session_ttl_minutes),
                ),
                "login_throttle": LoginThrottle(limit=settings.auth.login_attempts_per_minute),
            }
        ),
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
