-- Grafana: the read-only role its PostgreSQL datasource logs in as, what it may read, the
-- rollup functions every series panel reads (same names on both backends, defined in the
-- variant files), and what the hub last wrote to each Grafana (so a sync can tell a
-- dashboard edited in Grafana from one it left as it was).

-- Roles belong to the whole server; another database of the same server may have made it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'iochub_grafana') THEN
        BEGIN
            CREATE ROLE iochub_grafana NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by a migration of another database
        END;
    END IF;
END
$$;

-- What the dashboards read, and nothing more: no users, sessions, tokens, credentials,
-- keys, webhook secrets or camera passwords. The hub sets the password (and LOGIN) from
-- its settings when it provisions the datasource.
GRANT USAGE ON SCHEMA public TO iochub_grafana;
GRANT SELECT ON ward, device, reading, reading_1h, reading_latest, quarantine,
    health_event, device_event, alert,
    broadcast, broadcast_slot, broadcast_occurrence, broadcast_delivery
    TO iochub_grafana;

CREATE TABLE grafana_sync (
    grafana     text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('folder', 'datasource', 'dashboard')),
    uid         text NOT NULL,
    -- Grafana's version of the object right after the hub wrote it.
    version     integer NOT NULL,
    -- sha256 of what the hub wrote (for the datasource: its settings, password included).
    digest      text NOT NULL,
    synced_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (grafana, kind, uid)
);
