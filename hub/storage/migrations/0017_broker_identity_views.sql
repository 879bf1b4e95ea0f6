-- Broker identities read from the hub's database, for brokers that authenticate and
-- authorise against PostgreSQL (EMQX's PostgreSQL authenticator and authorizer, configured in
-- deploy/kubernetes/emqx.yaml). They grant what Mosquitto's dynamic-security roles grant
-- (hub/devices/broker: DEVICE_PERMISSIONS, HUB_ACLS); a test keeps the two in step.

-- The hub's own broker identity (Mosquitto keeps it in its plugin file instead).
CREATE TABLE broker_account (
    username     text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    role         text NOT NULL CHECK (role = 'hub'),
    -- sha256$<salt>$<hex digest of "<salt>:<secret>">, as hub.devices.broker.hash_device_secret
    secret_hash  text NOT NULL CHECK (secret_hash ~ '^sha256\$[0-9a-f]+\$[0-9a-f]{64}$'),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per identity that may connect. EMQX with password_hash_algorithm
-- {name = sha256, salt_position = prefix} accepts a client when
-- hex(sha256(salt || password)) equals password_hash; the hub hashes "<salt>:<secret>",
-- so the salt handed over ends with the colon.
CREATE VIEW broker_authn AS
SELECT a.username,
       split_part(a.secret_hash, '$', 3) AS password_hash,
       split_part(a.secret_hash, '$', 2) || ':' AS salt,
       false AS is_superuser
FROM broker_account a
UNION ALL
SELECT c.username,
       split_part(c.secret_hash, '$', 3),
       split_part(c.secret_hash, '$', 2) || ':',
       false
FROM device_credential c
JOIN device d ON d.id = c.device_id
WHERE c.revoked_at IS NULL
  AND d.lifecycle = 'active'
  AND split_part(c.secret_hash, '$', 1) = 'sha256'
  -- A device can never take the hub's identity (Mosquitto: the hub refuses such a uid).
  AND NOT EXISTS (SELECT FROM broker_account a WHERE a.username = c.username);

-- What each identity may do; anything not listed is denied (EMQX: no_match = deny).
-- EMQX's "subscribe" also covers receiving what matches (Mosquitto: subscribe* plus
-- publishClientReceive).
CREATE VIEW broker_acl AS
WITH device_grant (kind, action, channel) AS (
    VALUES ('sensor', 'publish', 'telemetry'), ('sensor', 'publish', 'status'),
           ('sensor', 'publish', 'event'), ('sensor', 'publish', 'fwstate'),
           ('sensor', 'subscribe', 'fw'),
           ('speaker', 'publish', 'status'), ('speaker', 'publish', 'event'),
           ('speaker', 'publish', 'ack'), ('speaker', 'publish', 'fwstate'),
           ('speaker', 'subscribe', 'cmd'), ('speaker', 'subscribe', 'groups'),
           ('speaker', 'subscribe', 'fw'),
           ('camera', 'publish', 'status'), ('camera', 'publish', 'event')
),
hub_grant (action, topic) AS (
    VALUES ('subscribe', 'iochub/v1/dev/#'), ('subscribe', '$share/+/iochub/v1/dev/#'),
           ('publish', 'iochub/v1/dev/+/cmd'), ('publish', 'iochub/v1/dev/+/groups'),
           ('publish', 'iochub/v1/dev/+/fw'), ('publish', 'iochub/v1/grp/+/cmd')
),
active_device AS (
    SELECT c.username, d.uid, d.kind
    FROM device_credential c
    JOIN device d ON d.id = c.device_id
    WHERE c.revoked_at IS NULL AND d.lifecycle = 'active'
      AND NOT EXISTS (SELECT FROM broker_account a WHERE a.username = c.username)
)
SELECT a.username, 'allow'::text AS permission, g.action, g.topic
FROM broker_account a CROSS JOIN hub_grant g
WHERE a.role = 'hub'
UNION ALL
SELECT d.username, 'allow', g.action, 'iochub/v1/dev/' || d.uid || '/' || g.channel
FROM active_device d JOIN device_grant g ON g.kind = d.kind
UNION ALL
-- Speakers read every group's commands: public announcements only the hub may publish.
SELECT d.username, 'allow', 'subscribe', 'iochub/v1/grp/+/cmd'
FROM active_device d WHERE d.kind = 'speaker';

-- The broker's read-only role: these two views and nothing else. NOLOGIN until the operator
-- gives it a password (docs/operations.md, "Kubernetes").
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'iochub_broker') THEN
        BEGIN
            CREATE ROLE iochub_broker NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by a migration of another database
        END;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO iochub_broker;
GRANT SELECT ON broker_authn, broker_acl TO iochub_broker;
