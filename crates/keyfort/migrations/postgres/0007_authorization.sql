-- An authorization in progress: the customer's way through the login and consent pages,
-- found by the digest of its cookie. Single use: completed_at is set by the decision.
CREATE TABLE authorization_sessions (
    session_hash  TEXT PRIMARY KEY,
    request       TEXT NOT NULL,
    csrf_hash     TEXT NOT NULL,
    customer_id   TEXT,
    customer_name TEXT,
    auth_time     BIGINT,
    acr           TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    completed_at  BIGINT
);
CREATE INDEX authorization_sessions_expires_at ON authorization_sessions (expires_at);

-- What one authorization granted: its code, and every access and refresh token issued
-- from it, are revoked together (a reused code, a revoked consent).
CREATE TABLE grants (
    grant_id     TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL,
    consent_id   TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    scope        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX grants_consent ON grants (consent_id);

-- Authorization codes, stored only as digests; redeemed once.
CREATE TABLE authorization_codes (
    code_hash       TEXT PRIMARY KEY,
    grant_id        TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    nonce           TEXT NOT NULL,
    acr             TEXT NOT NULL,
    auth_time       BIGINT NOT NULL,
    code_challenge  TEXT,
    expires_at      BIGINT NOT NULL,
    redeemed_at     BIGINT
);
CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at);

-- Refresh tokens, stored only as digests, bound to the certificate of the client that got them.
CREATE TABLE refresh_tokens (
    token_hash       TEXT PRIMARY KEY,
    grant_id         TEXT NOT NULL,
    cert_thumbprint  TEXT,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    revoked_at       BIGINT
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
