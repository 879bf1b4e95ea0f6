-- Cameras: how the hub reaches each onboarded camera (address, sealed credentials), what
-- its ONVIF probe said (profiles, capabilities) and its latest health check; and cameras
-- discovered on the network but not onboarded yet. Identity (vendor, model, firmware,
-- serial) lives on device; motion, tamper and health events go to device_event.
CREATE TABLE camera (
    device_id        bigint PRIMARY KEY REFERENCES device (id) ON DELETE CASCADE,
    host             text NOT NULL,
    port             integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    username         text NOT NULL,
    -- A SecretBox token bound to 'camera:<uid>'; NULL once the camera is decommissioned.
    password_sealed  text,
    -- WS-Discovery endpoint reference (urn:uuid:…): survives address changes.
    endpoint_ref     text UNIQUE,
    hardware_id      text NOT NULL DEFAULT '',
    hostname         text,
    mac_addresses    text[] NOT NULL DEFAULT '{}',
    capabilities     jsonb NOT NULL DEFAULT '{}',
    -- [{token, name, codec, width, height, frame_rate, stream_uri, ptz}]; URIs carry no credentials.
    profiles         jsonb NOT NULL DEFAULT '[]',
    snapshot_uri     text,
    health_state     text CHECK (health_state IN ('up_auth', 'up_no_auth', 'reachable', 'unreachable')),
    latency_ms       double precision,
    clock_drift_s    double precision,
    last_probe_at    timestamptz,
    last_error       text,
    onboarded_at     timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX camera_address_idx ON camera (host, port);
CREATE INDEX camera_health_state_idx ON camera (health_state);

CREATE TABLE camera_candidate (
    id            bigserial PRIMARY KEY,
    endpoint_ref  text NOT NULL UNIQUE,
    addresses     text[] NOT NULL,
    scopes        text[] NOT NULL DEFAULT '{}',
    serial        text,
    first_seen    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now(),
    dismissed     boolean NOT NULL DEFAULT false,
    dismissed_by  text
);
CREATE INDEX camera_candidate_open_idx ON camera_candidate (last_seen DESC) WHERE NOT dismissed;
