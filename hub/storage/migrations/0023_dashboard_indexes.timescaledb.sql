-- The continuous aggregates' materialised rows (TimescaleDB builds the index on every
-- chunk of the aggregate's hypertable).
CREATE INDEX reading_1m_metric_bucket_cover ON reading_1m (metric, bucket)
    INCLUDE (device_id, avg, count, min, max);
CREATE INDEX reading_1h_metric_bucket_cover ON reading_1h (metric, bucket)
    INCLUDE (device_id, avg, count, min, max);
