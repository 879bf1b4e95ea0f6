-- The database's maintenance jobs as the hub last saw them: TimescaleDB's policies
-- (compression, retention, rollup refresh) or, on plain PostgreSQL, the hub's own retention.
-- Who runs each, its last success and its failures, written by the supervising leader and
-- read by every hub process for /readyz.
CREATE TABLE maintenance_job (
    name                 text PRIMARY KEY,
    job_id               integer,
    runner               text NOT NULL CHECK (runner IN ('timescaledb', 'hub')),
    schedule_s           double precision NOT NULL CHECK (schedule_s > 0),
    last_success_at      timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    last_error           text,
    takeover_reason      text,
    checked_at           timestamptz NOT NULL
);
