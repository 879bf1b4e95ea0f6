-- Plain PostgreSQL: the hub keeps raw readings and an hourly table (0013). Minutes are
-- aggregated at query time from the raw rows of the buckets that start in the range (the
-- BRIN index on time bounds the scan). Inlinable SQL functions, so the planner sees the
-- time filter and the caller's.
CREATE FUNCTION reading_per_minute(range_from timestamptz, range_to timestamptz)
RETURNS TABLE (bucket timestamptz, device_id bigint, metric text, avg double precision,
               min double precision, max double precision, count bigint, last double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT date_bin('1 minute', r.time, TIMESTAMPTZ '2000-01-01 00:00:00+07'), r.device_id,
           r.metric, avg(r.value), min(r.value), max(r.value), count(*),
           (array_agg(r.value ORDER BY r.time DESC))[1]
    FROM reading r
    WHERE r.time >= date_bin('1 minute', range_from - interval '1 microsecond',
                             TIMESTAMPTZ '2000-01-01 00:00:00+07') + interval '1 minute'
      AND r.time < date_bin('1 minute', range_to, TIMESTAMPTZ '2000-01-01 00:00:00+07')
                   + interval '1 minute'
    GROUP BY 1, 2, 3
$$;

-- Hours that ended over an hour ago come from reading_1h, which the hub keeps here
-- (migration 0013, hub/telemetry/rollups.py, refreshed every few minutes); the newest two
-- from raw rows, as TimescaleDB's real-time aggregate does.
CREATE FUNCTION reading_per_hour(range_from timestamptz, range_to timestamptz)
RETURNS TABLE (bucket timestamptz, device_id bigint, metric text, avg double precision,
               min double precision, max double precision, count bigint, last double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT h.bucket, h.device_id, h.metric, h.avg, h.min, h.max, h.count, h.last
    FROM reading_1h h
    WHERE h.bucket >= range_from AND h.bucket <= range_to
      AND h.bucket < date_trunc('hour', now(), 'UTC') - interval '1 hour'
    UNION ALL
    SELECT date_bin('1 hour', r.time, TIMESTAMPTZ '2000-01-01 00:00:00+07'), r.device_id,
           r.metric, avg(r.value), min(r.value), max(r.value), count(*),
           (array_agg(r.value ORDER BY r.time DESC))[1]
    FROM reading r
    WHERE r.time >= greatest(
              date_bin('1 hour', range_from - interval '1 microsecond',
                       TIMESTAMPTZ '2000-01-01 00:00:00+07') + interval '1 hour',
              date_trunc('hour', now(), 'UTC') - interval '1 hour')
      AND r.time < date_bin('1 hour', range_to, TIMESTAMPTZ '2000-01-01 00:00:00+07')
                   + interval '1 hour'
      -- Evaluated once: a range that ended before the newest hours reads no raw row.
      AND range_to >= date_trunc('hour', now(), 'UTC') - interval '1 hour'
    GROUP BY 1, 2, 3
$$;
