-- API tokens may expire: a token past expires_at authenticates nobody (NULL: never expires).
ALTER TABLE api_token ADD COLUMN expires_at timestamptz;
ALTER TABLE api_token ADD CONSTRAINT api_token_expires_after_creation
    CHECK (expires_at IS NULL OR expires_at > created_at);
