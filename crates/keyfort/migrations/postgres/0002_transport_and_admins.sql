-- The transport certificate that authenticated a registration (RFC 8705 x5t#S256 and subject).
ALTER TABLE clients ADD COLUMN transport_cert_thumbprint TEXT;
ALTER TABLE clients ADD COLUMN transport_cert_subject TEXT;

-- Administrators, with Argon2id password hashes (PHC strings).
CREATE TABLE admins (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
