-- A customer signed in to their own pages (the TPPs they have authorised), found by the
-- digest of the session cookie; the CSRF token of its forms is kept as a digest too.
CREATE TABLE customer_sessions (
    session_hash  TEXT PRIMARY KEY,
    customer_id   TEXT NOT NULL,
    customer_name TEXT NOT NULL,
    csrf_hash     TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX customer_sessions_expires_at ON customer_sessions (expires_at);

-- Operators list consents newest first, by client, customer, status or type.
CREATE INDEX consents_created ON consents (created_at);
