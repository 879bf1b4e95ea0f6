-- Firmware: the signed catalog as imported (firmware_meta/), vulnerabilities per release
-- (from the manifests and from OSV advisories), maintenance windows per ward, and rollout
-- campaigns with their waves and one row per targeted device.
CREATE TABLE firmware_release (
    id               bigserial PRIMARY KEY,
    vendor           text NOT NULL,
    model            text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('speaker', 'sensor', 'camera')),
    version          text NOT NULL,
    released_on      date NOT NULL,
    min_version      text,
    end_of_support   date,
    notes            text NOT NULL DEFAULT '',
    artifact_file    text,
    artifact_url     text,
    artifact_size    bigint NOT NULL CHECK (artifact_size > 0),
    artifact_sha256  text NOT NULL CHECK (artifact_sha256 ~ '^[0-9a-f]{64}$'),
    -- The manifest as signed (its canonical JSON, signature table apart) and the proof.
    manifest         jsonb NOT NULL,
    manifest_sha256  text NOT NULL,
    signature_key    text NOT NULL,
    signature        text NOT NULL,
    source           text NOT NULL,
    imported_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (vendor, model, version),
    CHECK ((artifact_file IS NULL) <> (artifact_url IS NULL))
);

CREATE TABLE firmware_vulnerability (
    release_id   bigint NOT NULL REFERENCES firmware_release (id) ON DELETE CASCADE,
    cve          text NOT NULL CHECK (cve ~ '^CVE-[0-9]{4}-[0-9]{4,}$'),
    cvss         numeric(3, 1) NOT NULL CHECK (cvss BETWEEN 0 AND 10),
    summary      text NOT NULL,
    -- 'manifest', or the id of the OSV record that said so.
    source       text NOT NULL,
    added_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (release_id, cve)
);

-- Each device's compliance as last computed (hub.firmware.compliance): what Grafana's
-- firmware panel reads; the API computes the same thing live.
CREATE TABLE firmware_device_compliance (
    device_id        bigint PRIMARY KEY REFERENCES device (id) ON DELETE CASCADE,
    state            text NOT NULL CHECK (state IN ('current', 'outdated', 'vulnerable',
                     'end_of_support', 'unknown_model', 'unknown_version')),
    version          text NOT NULL,
    latest_version   text,
    versions_behind  integer NOT NULL DEFAULT 0,
    days_behind      integer NOT NULL DEFAULT 0,
    worst_severity   text,
    cves             text[] NOT NULL DEFAULT '{}',
    end_of_support   date,
    computed_at      timestamptz NOT NULL
);

-- When a ward's devices may be updated, in local time (Asia/Ho_Chi_Minh); may wrap midnight.
CREATE TABLE firmware_ward_window (
    ward_id     integer PRIMARY KEY REFERENCES ward (id) ON DELETE CASCADE,
    starts      time NOT NULL,
    ends        time NOT NULL,
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (starts <> ends)
);

CREATE TABLE firmware_campaign (
    id                  bigserial PRIMARY KEY,
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    release_id          bigint NOT NULL REFERENCES firmware_release (id) ON DELETE RESTRICT,
    -- What was asked for: {"wards": [...], "group": id, "devices": [...], "from_versions": [...]}.
    selector            jsonb NOT NULL,
    ward_ids            integer[] NOT NULL,
    state               text NOT NULL DEFAULT 'running' CHECK (state IN
                        ('running', 'waiting_approval', 'paused', 'stopped', 'cancelled', 'completed')),
    wave_sizes          integer[] NOT NULL,
    success_percent     numeric(5, 2) NOT NULL CHECK (success_percent BETWEEN 0 AND 100),
    error_percent       numeric(5, 2) NOT NULL CHECK (error_percent BETWEEN 0 AND 100),
    require_approval    boolean NOT NULL DEFAULT false,
    max_ward_percent    numeric(5, 2) NOT NULL CHECK (max_ward_percent > 0 AND max_ward_percent <= 100),
    broadcast_guard_s   integer NOT NULL CHECK (broadcast_guard_s >= 0),
    use_windows         boolean NOT NULL DEFAULT true,
    device_timeout_s    integer NOT NULL CHECK (device_timeout_s > 0),
    current_wave        integer NOT NULL DEFAULT 0,
    stop_reason         text,
    -- The moment the error threshold was found crossed: the benchmark's stop reaction.
    stopped_at          timestamptz,
    created_by          text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz
);
CREATE INDEX firmware_campaign_open_idx ON firmware_campaign (state)
    WHERE state IN ('running', 'waiting_approval', 'paused');

CREATE TABLE firmware_campaign_wave (
    campaign_id   bigint NOT NULL REFERENCES firmware_campaign (id) ON DELETE CASCADE,
    wave          integer NOT NULL,
    size          integer NOT NULL,
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN
                  ('pending', 'running', 'waiting_approval', 'succeeded', 'failed', 'cancelled')),
    started_at    timestamptz,
    finished_at   timestamptz,
    approved_by   text,
    PRIMARY KEY (campaign_id, wave)
);

CREATE TABLE firmware_campaign_device (
    campaign_id     bigint NOT NULL REFERENCES firmware_campaign (id) ON DELETE CASCADE,
    device_id       bigint NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    device_uid      text NOT NULL,
    ward_id         integer,
    wave            integer NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN
                    ('pending', 'sent', 'downloading', 'verifying', 'installing', 'rebooting',
                     'updated', 'failed', 'refused', 'cancelled')),
    from_version    text NOT NULL,
    reported_version text,
    -- One per attempt: a report names the command it answers, so stale ones are ignored.
    command_id      text,
    attempts        integer NOT NULL DEFAULT 0,
    reason          text,
    sent_at         timestamptz,
    deadline_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, device_id)
);
CREATE INDEX firmware_campaign_device_command_idx ON firmware_campaign_device (command_id);
CREATE INDEX firmware_campaign_device_active_idx ON firmware_campaign_device (device_id)
    WHERE state IN ('sent', 'downloading', 'verifying', 'installing', 'rebooting');

-- Wakes the rollout driver when a campaign is created, paused, resumed, approved or cancelled.
CREATE FUNCTION firmware_campaign_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('iochub_firmware', NEW.id::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER firmware_campaign_changed AFTER INSERT OR UPDATE OF state, current_wave ON firmware_campaign
    FOR EACH ROW EXECUTE FUNCTION firmware_campaign_notify();
