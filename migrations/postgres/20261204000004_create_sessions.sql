-- Console sign-in sessions; the cookie holds a random token, the table only its SHA-256.
CREATE TABLE sessions (
    token_hash    TEXT    PRIMARY KEY,
    admin_id      BIGINT NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    csrf          TEXT    NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);
