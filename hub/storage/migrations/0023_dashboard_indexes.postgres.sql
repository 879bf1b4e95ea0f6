-- The hub's own hourly table (0013); minutes are aggregated from raw rows at query time,
-- whose table stays as narrow to write as it is.
CREATE INDEX reading_1h_metric_bucket_cover ON reading_1h (metric, bucket)
    INCLUDE (device_id, avg, count, min, max);
