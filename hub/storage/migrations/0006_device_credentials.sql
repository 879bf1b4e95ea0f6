-- Each MQTT device's own broker identity: the hub keeps only a hash of its secret.
CREATE TABLE device_credential (
    device_id    bigint PRIMARY KEY REFERENCES device (id) ON DELETE CASCADE,
    username     text NOT NULL UNIQUE,
    secret_hash  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    rotated_at   timestamptz,
    revoked_at   timestamptz
);
