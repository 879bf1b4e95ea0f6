-- Each CoAP sensor's OSCORE (RFC 8613) key, and the counters OSCORE must not forget.
-- Key ids come from this sequence and are never given out twice, not even after a
-- key is revoked or its device deleted (TRUNCATE ... RESTART IDENTITY leaves it
-- alone too: it belongs to no column). 2^56 - 1 keeps every id within 7 bytes.
CREATE SEQUENCE coap_key_id_seq AS bigint MINVALUE 1 MAXVALUE 72057594037927935;

CREATE TABLE coap_key (
    device_id        bigint PRIMARY KEY REFERENCES device (id) ON DELETE CASCADE,
    -- The key id the device sends (its sender id, the hub's recipient id).
    recipient_id     bytea NOT NULL UNIQUE CHECK (octet_length(recipient_id) BETWEEN 1 AND 7),
    -- The hub's own sender id: the same in every context, each has its own master secret.
    sender_id        bytea NOT NULL CHECK (octet_length(sender_id) <= 7),
    -- Master secret and salt, sealed with the hub's SecretBox for "oscore:<uid>".
    sealed_material  text NOT NULL,
    algorithm        text NOT NULL,
    hkdf             text NOT NULL,
    -- The hub's lowest sender sequence number never used nor reserved (RFC 8613 B.1.1).
    next_sequence    bigint NOT NULL DEFAULT 0 CHECK (next_sequence BETWEEN 0 AND 1099511627775),
    -- The replay window; NULL while the key is in service or after a crash: the hub
    -- then recovers it through an Echo round trip (RFC 8613 B.1.2).
    replay_index     bigint CHECK (replay_index >= 0),
    replay_bits      bigint CHECK (replay_bits >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    rotated_at       timestamptz,
    revoked_at       timestamptz,
    CHECK ((replay_index IS NULL) = (replay_bits IS NULL))
);
