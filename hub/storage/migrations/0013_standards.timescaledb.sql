-- TimescaleDB: reading_1h is already the continuous aggregate (0003); non-numeric values
-- are a hypertable of their own, kept as long as raw readings (hub/telemetry/policies.py).
SELECT create_hypertable('reading_value', 'time', chunk_time_interval => INTERVAL '7 days',
                         migrate_data => true);
