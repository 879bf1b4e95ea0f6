-- TimescaleDB: a narrow hypertable, compressed per device and metric, with 1-minute and
-- 1-hour continuous aggregates. Retention and refresh windows are set by the hub at start
-- from its settings (hub/telemetry/policies.py), so they stay configurable.
CREATE TABLE reading (
    time       timestamptz NOT NULL,
    device_id  bigint NOT NULL,
    metric     text NOT NULL,
    value      double precision NOT NULL,
    PRIMARY KEY (device_id, metric, time)
);
SELECT create_hypertable('reading', 'time', chunk_time_interval => INTERVAL '1 day');
ALTER TABLE reading SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id, metric',
    timescaledb.compress_orderby = 'time DESC'
);

CREATE MATERIALIZED VIEW reading_1m WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', time) AS bucket, device_id, metric,
       avg(value) AS avg, min(value) AS min, max(value) AS max, count(*) AS count,
       last(value, time) AS last
FROM reading
GROUP BY bucket, device_id, metric
WITH NO DATA;

CREATE MATERIALIZED VIEW reading_1h WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, device_id, metric,
       avg(value) AS avg, min(value) AS min, max(value) AS max, count(*) AS count,
       last(value, time) AS last
FROM reading
GROUP BY bucket, device_id, metric
WITH NO DATA;
