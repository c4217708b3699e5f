-- One row per participant: the certificate number is the participant id.
CREATE TABLE certificates (
    number        BIGINT PRIMARY KEY,
    code          TEXT    NOT NULL,
    event_id      BIGINT,
    template      TEXT    NOT NULL DEFAULT '',
    last_name     TEXT    NOT NULL DEFAULT '',
    first_name    TEXT    NOT NULL DEFAULT '',
    second_name   TEXT    NOT NULL DEFAULT '',
    event_title   TEXT    NOT NULL DEFAULT '',
    points        BIGINT NOT NULL DEFAULT 0,
    points_text   TEXT    NOT NULL DEFAULT '',
    email         TEXT,
    status        TEXT    NOT NULL,
    problem       TEXT,
    pdf_sha256    TEXT,
    message_id    TEXT,
    issued_at     BIGINT,
    revoked_at    BIGINT,
    revoked_reason TEXT,
    search_text   TEXT    NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX certificates_status_number ON certificates (status, number);
CREATE INDEX certificates_issued_at ON certificates (issued_at);
CREATE INDEX certificates_event ON certificates (event_id);
