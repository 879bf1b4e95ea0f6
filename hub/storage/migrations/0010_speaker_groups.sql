-- Group commands: one publish on iochub/v1/grp/<group>/cmd reaches every speaker that
-- follows the group, so a ward's announcement costs the hub one message, not hundreds.

-- The groups each speaker says (in its status) that it follows. Dispatch publishes to a
-- group only when every follower is a target, so nobody outside a broadcast hears it.
CREATE TABLE speaker_group_follow (
    device_id    bigint PRIMARY KEY REFERENCES device (id) ON DELETE CASCADE,
    groups       text[] NOT NULL,
    reported_at  timestamptz NOT NULL
);
CREATE INDEX speaker_group_follow_groups_idx ON speaker_group_follow USING gin (groups);

-- Every member of a group command shares its command id: deliveries are found by
-- (command id, speaker), and a resend to one speaker repeats the id it already has.
ALTER TABLE broadcast_delivery DROP CONSTRAINT broadcast_delivery_command_id_key;
CREATE INDEX broadcast_delivery_command_idx ON broadcast_delivery (command_id, device_uid);
-- How each speaker was reached first: the group's name, or NULL for its own topic.
ALTER TABLE broadcast_delivery ADD COLUMN via_group text;

-- Cancelling a broadcast stops what is playing: its open occurrence becomes cancelled,
-- and the leader sends stop to the speakers it reached.
ALTER TABLE broadcast_occurrence DROP CONSTRAINT broadcast_occurrence_status_check;
ALTER TABLE broadcast_occurrence ADD CONSTRAINT broadcast_occurrence_status_check
    CHECK (status IN ('claimed', 'sending', 'sent', 'completed', 'missed', 'skipped',
                      'cancelled'));
-- When stop went out for a cancelled occurrence: whoever sets it sends it.
ALTER TABLE broadcast_occurrence ADD COLUMN stop_sent_at timestamptz;
