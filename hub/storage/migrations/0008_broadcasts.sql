-- Loudspeaker broadcasts: audio assets, quiet hours, broadcasts and their planned slots,
-- occurrences as fired (one row each, the scheduler's claim), and every speaker's delivery.
CREATE TABLE audio_asset (
    id               bigserial PRIMARY KEY,
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- NULL: the district library, usable by every ward.
    ward_id          integer REFERENCES ward (id) ON DELETE RESTRICT,
    source           text NOT NULL CHECK (source IN ('upload', 'tts')),
    original_format  text NOT NULL,
    original_sha256  text NOT NULL CHECK (original_sha256 ~ '^[0-9a-f]{64}$'),
    original_bytes   bigint NOT NULL CHECK (original_bytes > 0),
    -- The normalised 16-bit WAV speakers play, stored under data_dir/audio/<sha256>.wav.
    sha256           text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes       bigint NOT NULL CHECK (size_bytes > 0),
    duration_s       double precision NOT NULL CHECK (duration_s > 0),
    sample_rate      integer NOT NULL CHECK (sample_rate > 0),
    loudness_lufs    double precision,
    gain_db          double precision NOT NULL DEFAULT 0,
    tts_text         text,
    tts_voice        text,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audio_asset_ward_idx ON audio_asset (ward_id, id DESC);

-- Quiet hours in local time; a ward without a row has the hub's default. starts = ends: none.
CREATE TABLE ward_quiet_hours (
    ward_id     integer PRIMARY KEY REFERENCES ward (id) ON DELETE CASCADE,
    starts      time NOT NULL,
    ends        time NOT NULL,
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE broadcast (
    id               bigserial PRIMARY KEY,
    title            text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    priority         text NOT NULL CHECK (priority IN ('normal', 'priority', 'emergency')),
    volume           smallint NOT NULL CHECK (volume BETWEEN 0 AND 100),
    audio_asset_id   bigint NOT NULL REFERENCES audio_asset (id) ON DELETE RESTRICT,
    duration_s       double precision NOT NULL CHECK (duration_s > 0),
    target_all       boolean NOT NULL DEFAULT false,
    target_wards     integer[] NOT NULL DEFAULT '{}',
    target_groups    integer[] NOT NULL DEFAULT '{}',
    target_speakers  text[] NOT NULL DEFAULT '{}',
    -- Every ward the targets reach: ward staff see a broadcast only if they serve them all.
    ward_ids         integer[] NOT NULL,
    starts_at        timestamptz NOT NULL,
    timezone         text NOT NULL,
    rrule            text,
    exdates          text[] NOT NULL DEFAULT '{}',
    retry_window_s   integer NOT NULL CHECK (retry_window_s BETWEEN 0 AND 86400),
    -- Slots exist up to this instant; NULL once the whole series is planned.
    planned_through  timestamptz,
    state            text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'cancelled')),
    -- Conflicts found when it was saved and left to people to settle (priority broadcasts).
    conflicts        jsonb NOT NULL DEFAULT '[]',
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    cancelled_by     text,
    cancelled_at     timestamptz
);
CREATE INDEX broadcast_ward_ids_idx ON broadcast USING gin (ward_ids);
CREATE INDEX broadcast_open_series_idx ON broadcast (planned_through)
    WHERE state = 'active' AND planned_through IS NOT NULL;

-- The plan: each occurrence of a broadcast, expanded from its RRULE ahead of time.
CREATE TABLE broadcast_slot (
    broadcast_id  bigint NOT NULL REFERENCES broadcast (id) ON DELETE CASCADE,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    -- Set when the slot was placed after a conflicting broadcast.
    shifted_from  timestamptz,
    PRIMARY KEY (broadcast_id, starts_at),
    CHECK (ends_at > starts_at)
);
CREATE INDEX broadcast_slot_starts_idx ON broadcast_slot (starts_at);

-- An occurrence as fired. The unique key is the claim: whoever inserts it fires it.
CREATE TABLE broadcast_occurrence (
    id             bigserial PRIMARY KEY,
    broadcast_id   bigint NOT NULL REFERENCES broadcast (id) ON DELETE CASCADE,
    scheduled_at   timestamptz NOT NULL,
    status         text NOT NULL
                   CHECK (status IN ('claimed', 'sending', 'sent', 'completed', 'missed', 'skipped')),
    claimed_by     text NOT NULL,
    claimed_at     timestamptz NOT NULL DEFAULT now(),
    -- When the fan-out was meant to begin, and when it did: the scheduler's drift.
    send_due_at    timestamptz,
    send_started_at timestamptz,
    sent_at        timestamptz,
    start_at       timestamptz,
    expires_at     timestamptz,
    speaker_count  integer NOT NULL DEFAULT 0,
    note           text NOT NULL DEFAULT '',
    UNIQUE (broadcast_id, scheduled_at)
);
CREATE INDEX broadcast_occurrence_open_idx ON broadcast_occurrence (status)
    WHERE status IN ('claimed', 'sending', 'sent');

CREATE TABLE broadcast_delivery (
    occurrence_id      bigint NOT NULL REFERENCES broadcast_occurrence (id) ON DELETE CASCADE,
    device_id          bigint NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    device_uid         text NOT NULL,
    ward_id            integer,
    command_id         text NOT NULL UNIQUE,
    send_count         integer NOT NULL DEFAULT 0,
    first_sent_at      timestamptz,
    last_sent_at       timestamptz,
    send_error         text,
    -- Stage times as the speaker reported them; each kept from its first ack.
    received_at        timestamptz,
    downloading_at     timestamptz,
    started_at         timestamptz,
    finished_at        timestamptz,
    preempted_at       timestamptz,
    failed_at          timestamptz,
    -- A speaker's reason, or the hub's: no_answer, quiet_hours.
    failure_reason     text,
    duplicate_acks     integer NOT NULL DEFAULT 0,
    out_of_order_acks  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (occurrence_id, device_id)
);

-- Wakes the scheduler leader the moment a broadcast is saved, changed or cancelled.
CREATE FUNCTION broadcast_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('iochub_broadcasts', NEW.id::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER broadcast_changed AFTER INSERT OR UPDATE ON broadcast
    FOR EACH ROW EXECUTE FUNCTION broadcast_notify();
