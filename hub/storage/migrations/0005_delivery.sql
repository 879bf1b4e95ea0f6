-- Alert delivery: the transactional outbox, IOC webhook subscriptions with their
-- encrypted secrets, and one delivery per (event, destination) with its attempt log.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    created_at     timestamptz NOT NULL DEFAULT now(),
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    event_type     text NOT NULL CHECK (event_type ~ '^vn\.iochub\.[a-z0-9_]+(\.[a-z0-9_]+)*$'),
    subject        text NOT NULL CHECK (length(subject) BETWEEN 1 AND 200),
    -- Events with one ordering key reach each destination in the order they were fanned out.
    ordering_key   text NOT NULL CHECK (length(ordering_key) BETWEEN 1 AND 200),
    ward_id        integer REFERENCES ward (id) ON DELETE SET NULL,
    data           jsonb NOT NULL,
    fanned_out_at  timestamptz
);
CREATE INDEX outbox_pending_fan_out_idx ON outbox (id) WHERE fanned_out_at IS NULL;
CREATE INDEX outbox_created_idx ON outbox (created_at);

CREATE TABLE webhook_subscription (
    id                  serial PRIMARY KEY,
    name                text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    url                 text NOT NULL CHECK (url ~ '^https?://'),
    -- Empty means every alert event type / every ward.
    event_types         text[] NOT NULL DEFAULT '{}',
    ward_ids            integer[] NOT NULL DEFAULT '{}',
    active              boolean NOT NULL DEFAULT true,
    deactivated_reason  text NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_secret (
    id               serial PRIMARY KEY,
    subscription_id  integer NOT NULL REFERENCES webhook_subscription (id) ON DELETE CASCADE,
    -- "whsec_..." sealed by the hub's secret box (AES-GCM), bound to subscription_id.
    sealed           text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Set when rotated out: it keeps signing, beside the new secret, until then.
    expires_at       timestamptz
);
CREATE INDEX webhook_secret_subscription_idx ON webhook_secret (subscription_id, id);

CREATE TABLE outbox_delivery (
    id                bigserial PRIMARY KEY,
    outbox_id         bigint NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    destination       text NOT NULL CHECK (destination IN ('webhook', 'grafana')),
    subscription_id   integer REFERENCES webhook_subscription (id) ON DELETE CASCADE,
    -- One queue per receiver ('webhook:<subscription id>' or 'grafana'); within a lane,
    -- deliveries sharing an ordering key go out strictly one after another.
    lane              text NOT NULL,
    ordering_key      text NOT NULL,
    -- Stable across retries and redeliveries: receivers de-duplicate on it.
    webhook_id        text NOT NULL UNIQUE
                      DEFAULT ('msg_' || replace(gen_random_uuid()::text, '-', '')),
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    deadline_at       timestamptz NOT NULL,
    -- Fencing token of the worker holding the delivery; its lease is next_attempt_at.
    claim             uuid,
    last_attempt_at   timestamptz,
    last_status_code  integer,
    last_error        text,
    last_latency_ms   integer,
    delivered_at      timestamptz,
    -- The destination's id for what it received (Grafana's annotation id).
    external_id       text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (outbox_id, destination, subscription_id),
    CHECK ((destination = 'webhook') = (subscription_id IS NOT NULL))
);
CREATE INDEX outbox_delivery_due_idx ON outbox_delivery (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_delivery_lane_idx ON outbox_delivery (lane, ordering_key, id)
    WHERE status = 'pending';
CREATE INDEX outbox_delivery_subscription_idx ON outbox_delivery (subscription_id, status, id);
CREATE INDEX outbox_delivery_destination_idx ON outbox_delivery (destination, status, id);

CREATE TABLE outbox_delivery_attempt (
    id            bigserial PRIMARY KEY,
    delivery_id   bigint NOT NULL REFERENCES outbox_delivery (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    attempted_at  timestamptz NOT NULL DEFAULT now(),
    status_code   integer,
    latency_ms    integer,
    error         text
);
CREATE INDEX outbox_delivery_attempt_delivery_idx ON outbox_delivery_attempt (delivery_id, id);
