-- Plain PostgreSQL: hourly means kept by the hub itself (hub/telemetry/rollups.py), with
-- the columns of TimescaleDB's continuous aggregate of the same name, so that the daily
-- VN_AQI over months outlives raw retention on both backends and reads one table.
CREATE TABLE reading_1h (
    bucket     timestamptz NOT NULL,
    device_id  bigint NOT NULL,
    metric     text NOT NULL,
    avg        double precision NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    count      bigint NOT NULL,
    last       double precision NOT NULL,
    PRIMARY KEY (device_id, metric, bucket)
);
CREATE INDEX reading_1h_bucket_brin ON reading_1h USING brin (bucket);
CREATE INDEX reading_value_time_brin ON reading_value USING brin (time);
