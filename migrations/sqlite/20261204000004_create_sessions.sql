-- Console sign-in sessions; the cookie holds a random token, the table only its SHA-256.
CREATE TABLE sessions (
    token_hash    TEXT    PRIMARY KEY,
    admin_id      INTEGER NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    csrf          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);
