-- Occurrences that tell the truth, speakers people can turn down or stop, devices that flap.

-- An occurrence's status follows what its speakers report (hub/broadcasts/occurrences.py):
-- planned → dispatching → playing → completed | partially_failed | failed | preempted,
-- or cancelled; missed and skipped when it never went out.
ALTER TABLE broadcast_occurrence DROP CONSTRAINT broadcast_occurrence_status_check;
UPDATE broadcast_occurrence SET status = CASE status
    WHEN 'claimed' THEN 'planned'
    WHEN 'sending' THEN 'dispatching'
    WHEN 'sent' THEN 'dispatching'
    ELSE status END;
ALTER TABLE broadcast_occurrence ADD CONSTRAINT broadcast_occurrence_status_check
    CHECK (status IN ('planned', 'dispatching', 'playing', 'completed', 'partially_failed',
                      'failed', 'preempted', 'cancelled', 'missed', 'skipped'));
DROP INDEX broadcast_occurrence_open_idx;
CREATE INDEX broadcast_occurrence_open_idx ON broadcast_occurrence (status)
    WHERE status IN ('planned', 'dispatching', 'playing');
-- Open occurrences are looked up by time when a higher priority one fires.
CREATE INDEX broadcast_occurrence_open_time_idx ON broadcast_occurrence (start_at)
    WHERE status IN ('planned', 'dispatching', 'playing');

-- A volume or stop command an operator sent to one speaker (alone, or as one of a group or
-- ward), and what the speaker answered.
CREATE TABLE speaker_control (
    id              bigserial PRIMARY KEY,
    -- Every speaker of one request shares it: a ward's stop is one request.
    request_id      uuid NOT NULL,
    device_id       bigint NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    device_uid      text NOT NULL,
    ward_id         integer,
    command_id      text NOT NULL UNIQUE,
    action          text NOT NULL CHECK (action IN ('set_volume', 'stop')),
    volume          smallint CHECK (volume BETWEEN 0 AND 100),
    requested_by    text NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    send_error      text,
    received_at     timestamptz,
    finished_at     timestamptz,
    failed_at       timestamptz,
    failure_reason  text,
    CHECK ((action = 'set_volume') = (volume IS NOT NULL))
);
CREATE INDEX speaker_control_request_idx ON speaker_control (request_id);
CREATE INDEX speaker_control_device_idx ON speaker_control (device_id, id DESC);

-- Flapping (as Nagios and Icinga detect it): too many state changes within a window. The
-- status stays what the state machine says; these say that it keeps changing, and why.
ALTER TABLE device
    ADD COLUMN flapping_since timestamptz,
    ADD COLUMN flapping_reason text NOT NULL DEFAULT '';
