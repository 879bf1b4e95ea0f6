-- People, their ward scope, sessions, API tokens and the audit log.
CREATE TABLE hub_user (
    id               serial PRIMARY KEY,
    username         text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    display_name     text NOT NULL DEFAULT '',
    password_hash    text NOT NULL,
    role             text NOT NULL CHECK (role IN ('admin', 'technician', 'ward_staff', 'viewer')),
    is_active        boolean NOT NULL DEFAULT true,
    failed_logins    integer NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE hub_user_ward (
    user_id  integer NOT NULL REFERENCES hub_user (id) ON DELETE CASCADE,
    ward_id  integer NOT NULL REFERENCES ward (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, ward_id)
);

CREATE TABLE login_session (
    id           bigserial PRIMARY KEY,
    token_hash   bytea NOT NULL UNIQUE,
    csrf_token   text NOT NULL,
    user_id      integer NOT NULL REFERENCES hub_user (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX login_session_expires_idx ON login_session (expires_at);

CREATE TABLE api_token (
    id            serial PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    token_hash    bytea NOT NULL UNIQUE,
    prefix        text NOT NULL,
    user_id       integer NOT NULL REFERENCES hub_user (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    UNIQUE (user_id, name)
);

CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor_id     integer REFERENCES hub_user (id) ON DELETE SET NULL,
    actor        text NOT NULL,
    action       text NOT NULL,
    object_type  text NOT NULL,
    object_id    text NOT NULL,
    ward_id      integer REFERENCES ward (id) ON DELETE SET NULL,
    before       jsonb,
    after        jsonb
);
CREATE INDEX audit_log_object_idx ON audit_log (object_type, object_id, at DESC);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC);
