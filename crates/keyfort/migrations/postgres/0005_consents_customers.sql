-- Open Banking intents (consents). The request is kept as the TPP sent it, for the
-- responses that echo it; expires_at is its ExpirationDateTime (account-access and
-- funds-confirmation). A decided consent remembers the customer and the chosen accounts.
CREATE TABLE consents (
    consent_id        TEXT PRIMARY KEY,
    consent_type      TEXT NOT NULL,
    client_id         TEXT NOT NULL,
    status            TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    status_updated_at BIGINT NOT NULL,
    expires_at        BIGINT,
    request           TEXT NOT NULL,
    customer_id       TEXT,
    account_ids       TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX consents_client ON consents (client_id);
CREATE INDEX consents_customer ON consents (customer_id);

-- x-idempotency-key of consent POSTs, per client and consent type: the SHA-256 of the body
-- it was first used with and the consent it created. Rows may go once the idempotency
-- period ([consents] idempotency_seconds) has passed.
CREATE TABLE consent_idempotency (
    client_id       TEXT NOT NULL,
    consent_type    TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body_sha256     TEXT NOT NULL,
    consent_id      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (client_id, consent_type, idempotency_key)
);
CREATE INDEX consent_idempotency_created ON consent_idempotency (created_at);

-- Bank customers (PSUs) of the built-in store. customer_id is stable and random (the ID
-- token's sub); passwords are Argon2id PHC strings. The lockout state lives here so that
-- every node sees it. totp_last_step is the last accepted RFC 6238 time step, so that a
-- code is never accepted twice.
CREATE TABLE customers (
    customer_id    TEXT PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    totp_secret    TEXT,
    totp_last_step BIGINT,
    failed_logins  BIGINT NOT NULL DEFAULT 0,
    locked_until   BIGINT,
    created_at     BIGINT NOT NULL
);

-- The customers' accounts; account_id is unique bank-wide.
CREATE TABLE customer_accounts (
    account_id               TEXT PRIMARY KEY,
    customer_id              TEXT NOT NULL REFERENCES customers (customer_id),
    name                     TEXT NOT NULL,
    scheme                   TEXT NOT NULL,
    identification           TEXT NOT NULL,
    secondary_identification TEXT,
    currency                 TEXT NOT NULL,
    created_at               BIGINT NOT NULL
);
CREATE INDEX customer_accounts_customer ON customer_accounts (customer_id, account_id);

-- Audit lines about a consent name it, and the customer who acted.
ALTER TABLE audit_events ADD COLUMN consent_id TEXT;
ALTER TABLE audit_events ADD COLUMN customer_id TEXT;
CREATE INDEX audit_events_consent ON audit_events (consent_id, id);
