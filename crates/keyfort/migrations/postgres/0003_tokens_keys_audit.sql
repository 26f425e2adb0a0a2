-- The server's signing keys. A key is published from created_at and signs from activates_at.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    private_key  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    activates_at BIGINT NOT NULL
);

-- Access tokens revoked before their expiry (RFC 7009). Rows may go once expires_at passes.
CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Who did what to which registration, from which certificate, and how it ended.
CREATE TABLE audit_events (
    id              BIGSERIAL PRIMARY KEY,
    at              BIGINT NOT NULL,
    action          TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    client_id       TEXT,
    software_id     TEXT,
    org_id          TEXT,
    cert_thumbprint TEXT,
    cert_subject    TEXT,
    peer            TEXT,
    detail          TEXT
);
CREATE INDEX audit_events_client ON audit_events (client_id, id);
