-- Plain PostgreSQL: one table; rollups are computed at query time.
CREATE TABLE reading (
    time       timestamptz NOT NULL,
    device_id  bigint NOT NULL,
    metric     text NOT NULL,
    value      double precision NOT NULL,
    -- Also what makes a redelivered message a no-op instead of a duplicate row.
    PRIMARY KEY (device_id, metric, time)
);
CREATE INDEX reading_time_brin ON reading USING brin (time);
