-- The issuing queue. A trigger queues a job per participant; at most one is waiting or running at a
-- time (jobs_one_active), and once the worker has read the item it sets dedupe_key to the stage
-- entry's movedTime, so one stage entry is issued once however many hints arrive.
CREATE TABLE jobs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    participant_id BIGINT NOT NULL,
    kind          TEXT    NOT NULL,
    dedupe_key    TEXT,
    state         TEXT    NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    run_at        BIGINT NOT NULL,
    lease_until   BIGINT,
    leased_by     TEXT,
    last_error    TEXT,
    progress      TEXT    NOT NULL DEFAULT '{}',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (participant_id, kind, dedupe_key)
);
CREATE INDEX jobs_ready ON jobs (state, run_at);
CREATE UNIQUE INDEX jobs_one_active ON jobs (participant_id, kind)
    WHERE state IN ('queued', 'running');

CREATE TABLE job_events (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id        BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    participant_id BIGINT NOT NULL,
    at            BIGINT NOT NULL,
    step          TEXT    NOT NULL,
    outcome       TEXT    NOT NULL,
    message       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX job_events_participant ON job_events (participant_id, at);
