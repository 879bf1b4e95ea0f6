-- Standards as written: SenML device profiles per model, per-device backfill, readings
-- whose values are not numbers (SenML vs, vb, vd), hourly rollups for the daily VN_AQI.

-- Profiles imported for a model (`iochub devices profiles import`); shipped ones live in
-- hub/devices/profiles/*.json, and an imported profile of the same model replaces one.
CREATE TABLE device_profile (
    model       text PRIMARY KEY CHECK (length(model) BETWEEN 1 AND 200),
    document    jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- How far back this device may deliver readings (a gateway emptying a week's buffer
-- after an outage); NULL: the hub's limit (IOCHUB_TELEMETRY__MAX_AGE_DAYS).
ALTER TABLE device ADD COLUMN backfill_days integer CHECK (backfill_days BETWEEN 1 AND 366);

-- String, boolean and data values of the catalog metrics that take them (and of raw/
-- names): beside the narrow numeric table, so the hot path stays one COPY of floats.
CREATE TABLE reading_value (
    time        timestamptz NOT NULL,
    device_id   bigint NOT NULL,
    metric      text NOT NULL,
    text_value  text,
    bool_value  boolean,
    data_value  bytea,
    PRIMARY KEY (device_id, metric, time),
    CHECK (num_nonnulls(text_value, bool_value, data_value) = 1)
);
