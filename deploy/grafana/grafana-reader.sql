-- Read-only access for Grafana's "iochub" datasource: exactly the relations the
-- provisioned dashboards read. Run as the database owner after creating the role
-- (see docs/dashboards.md):  psql -d iochub -f grafana-reader.sql
GRANT USAGE ON SCHEMA public TO iochub_grafana;
GRANT SELECT ON ward, device, reading, reading_latest, health_event, alert, quarantine
    TO iochub_grafana;

-- TimescaleDB only: the hourly continuous aggregate behind the 30-day trend panel.
DO $$
BEGIN
    IF to_regclass('reading_1h') IS NOT NULL THEN
        GRANT SELECT ON reading_1h TO iochub_grafana;
    END IF;
END
$$;
