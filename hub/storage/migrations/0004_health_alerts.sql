-- Device health (connectivity kept apart from data, maintenance windows, history)
-- and alerts (rules, their persisted evaluation state, the alerts and their comments).
ALTER TABLE device
    ADD COLUMN connected boolean,
    ADD COLUMN last_data_at timestamptz,
    ADD COLUMN expected_interval_s integer CHECK (expected_interval_s BETWEEN 5 AND 86400),
    ADD COLUMN maintenance_until timestamptz,
    ADD COLUMN maintenance_reason text NOT NULL DEFAULT '',
    ADD COLUMN faults text[] NOT NULL DEFAULT '{}',
    ADD COLUMN status_changed_at timestamptz;

CREATE TABLE health_event (
    id          bigserial PRIMARY KEY,
    device_id   bigint NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    from_status text NOT NULL,
    to_status   text NOT NULL,
    reason      text NOT NULL DEFAULT ''
);
CREATE INDEX health_event_device_idx ON health_event (device_id, at DESC);
CREATE INDEX health_event_at_idx ON health_event (at);

CREATE TABLE device_event (
    id         bigserial PRIMARY KEY,
    device_id  bigint NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL,
    kind       text NOT NULL,
    active     boolean NOT NULL,
    data       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX device_event_device_idx ON device_event (device_id, at DESC);

CREATE TABLE alert_rule (
    id               serial PRIMARY KEY,
    name             text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    kind             text NOT NULL CHECK (kind IN ('threshold', 'offline', 'degraded')),
    enabled          boolean NOT NULL DEFAULT true,
    scope_type       text NOT NULL CHECK (scope_type IN ('all', 'kind', 'ward', 'group', 'device')),
    scope_value      text NOT NULL DEFAULT '',
    metric           text,
    comparison       text CHECK (comparison IN ('>', '>=', '<', '<=')),
    threshold        double precision,
    clear_threshold  double precision,
    escalations      jsonb NOT NULL DEFAULT '[]',
    for_seconds      integer NOT NULL DEFAULT 0 CHECK (for_seconds >= 0),
    severity         text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    message_template text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'threshold' OR (metric IS NOT NULL AND comparison IS NOT NULL
                                   AND threshold IS NOT NULL AND clear_threshold IS NOT NULL))
);

-- Where each (rule, device) stands between readings, so a restart keeps "for" durations.
CREATE TABLE alert_rule_state (
    rule_id        integer NOT NULL REFERENCES alert_rule (id) ON DELETE CASCADE,
    device_id      bigint NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    pending_since  timestamptz,
    PRIMARY KEY (rule_id, device_id)
);

CREATE TABLE alert (
    id               bigserial PRIMARY KEY,
    fingerprint      text NOT NULL,
    rule_id          integer REFERENCES alert_rule (id) ON DELETE SET NULL,
    rule_name        text NOT NULL,
    device_id        bigint NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    ward_id          integer REFERENCES ward (id) ON DELETE SET NULL,
    severity         text NOT NULL,
    state            text NOT NULL CHECK (state IN ('firing', 'acknowledged', 'resolved')),
    value            double precision,
    threshold        double precision,
    message          text NOT NULL,
    started_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    resolved_at      timestamptz,
    resolved_by      text,
    assignee         text
);
-- One open alert per (rule, device): the fingerprint.
CREATE UNIQUE INDEX alert_open_fingerprint ON alert (fingerprint) WHERE state <> 'resolved';
CREATE INDEX alert_ward_state_idx ON alert (ward_id, state, id DESC);

CREATE TABLE alert_comment (
    id        bigserial PRIMARY KEY,
    alert_id  bigint NOT NULL REFERENCES alert (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL DEFAULT now(),
    author    text NOT NULL,
    text      text NOT NULL CHECK (length(text) BETWEEN 1 AND 4000)
);
