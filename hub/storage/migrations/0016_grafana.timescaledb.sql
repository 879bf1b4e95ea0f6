-- TimescaleDB: the rollups are the continuous aggregates (real-time: the newest buckets
-- come from raw rows until they are materialised). Same signature as on plain PostgreSQL.
GRANT SELECT ON reading_1m TO iochub_grafana;

CREATE FUNCTION reading_per_minute(range_from timestamptz, range_to timestamptz)
RETURNS TABLE (bucket timestamptz, device_id bigint, metric text, avg double precision,
               min double precision, max double precision, count bigint, last double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT m.bucket, m.device_id, m.metric, m.avg, m.min, m.max, m.count, m.last
    FROM reading_1m m
    WHERE m.bucket >= range_from AND m.bucket <= range_to
$$;

CREATE FUNCTION reading_per_hour(range_from timestamptz, range_to timestamptz)
RETURNS TABLE (bucket timestamptz, device_id bigint, metric text, avg double precision,
               min double precision, max double precision, count bigint, last double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT h.bucket, h.device_id, h.metric, h.avg, h.min, h.max, h.count, h.last
    FROM reading_1h h
    WHERE h.bucket >= range_from AND h.bucket <= range_to
$$;
