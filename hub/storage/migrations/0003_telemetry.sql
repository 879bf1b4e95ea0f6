-- Telemetry: readings (layout per backend, in the variant files), the latest value per
-- device and metric, and the quarantine of payloads that could not be stored.
CREATE TABLE reading_latest (
    device_id  bigint NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    metric     text NOT NULL,
    time       timestamptz NOT NULL,
    value      double precision NOT NULL,
    PRIMARY KEY (device_id, metric)
);

CREATE TABLE quarantine (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    source       text NOT NULL,
    device_uid   text,
    reason       text NOT NULL,
    raw          bytea NOT NULL,
    size         integer NOT NULL
);
CREATE INDEX quarantine_received_idx ON quarantine (received_at DESC);
CREATE INDEX quarantine_device_idx ON quarantine (device_uid, received_at DESC);
