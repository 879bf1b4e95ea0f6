-- Registry: wards, devices, groups.
CREATE TABLE ward (
    id          serial PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9-]{0,31}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE device (
    id                bigserial PRIMARY KEY,
    uid               text NOT NULL UNIQUE CHECK (uid ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    kind              text NOT NULL CHECK (kind IN ('camera', 'speaker', 'sensor')),
    name              text NOT NULL DEFAULT '',
    serial            text,
    vendor            text NOT NULL DEFAULT '',
    model             text NOT NULL DEFAULT '',
    firmware_version  text NOT NULL DEFAULT '',
    ward_id           integer REFERENCES ward (id) ON DELETE RESTRICT,
    latitude          double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude         double precision CHECK (longitude BETWEEN -180 AND 180),
    endpoint          text NOT NULL DEFAULT '',
    tags              text[] NOT NULL DEFAULT '{}',
    lifecycle         text NOT NULL DEFAULT 'active'
                      CHECK (lifecycle IN ('pending', 'active', 'decommissioned')),
    status            text NOT NULL DEFAULT 'unknown'
                      CHECK (status IN ('unknown', 'online', 'late', 'offline', 'degraded', 'maintenance')),
    status_reason     text NOT NULL DEFAULT '',
    last_seen         timestamptz,
    discovered_from   text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((latitude IS NULL) = (longitude IS NULL))
);
CREATE UNIQUE INDEX device_kind_serial_key ON device (kind, serial) WHERE serial IS NOT NULL;
CREATE INDEX device_ward_kind_idx ON device (ward_id, kind);
CREATE INDEX device_status_idx ON device (status);
CREATE INDEX device_tags_idx ON device USING gin (tags);

CREATE TABLE device_group (
    id          serial PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    ward_id     integer REFERENCES ward (id) ON DELETE RESTRICT,
    -- A saved filter (same keys as the device list's query) instead of static members.
    filter      jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (ward_id, name)
);

CREATE TABLE device_group_member (
    group_id   integer NOT NULL REFERENCES device_group (id) ON DELETE CASCADE,
    device_id  bigint NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, device_id)
);
