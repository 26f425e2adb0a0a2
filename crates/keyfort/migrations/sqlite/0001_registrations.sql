-- Registered clients. Secrets are stored only as SHA-256 digests.
CREATE TABLE clients (
    client_id               TEXT PRIMARY KEY,
    status                  TEXT NOT NULL,
    issued_at               INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    software_id             TEXT,
    org_id                  TEXT,
    -- Set to software_id while the client is active and one registration per software is
    -- enforced; the unique index makes a second concurrent registration fail atomically.
    active_software_id      TEXT,
    software_roles          TEXT NOT NULL,
    software_statement      TEXT,
    metadata                TEXT NOT NULL,
    client_secret_hash      TEXT,
    registration_token_hash TEXT NOT NULL
);
CREATE UNIQUE INDEX clients_one_active_per_software ON clients (active_software_id);
CREATE INDEX clients_software_id ON clients (software_id);
CREATE INDEX clients_org_id ON clients (org_id);

-- Every jti seen in an accepted request, per issuer, so a replay is refused even after a
-- restart. Rows may be purged once expires_at has passed.
CREATE TABLE used_jtis (
    issuer      TEXT NOT NULL,
    jti         TEXT NOT NULL,
    expires_at  INTEGER,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX used_jtis_expires_at ON used_jtis (expires_at);
