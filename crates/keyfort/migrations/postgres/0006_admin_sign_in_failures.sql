-- Failed sign-ins of administrators, shared by every node so that N nodes do not give an
-- attacker N times the tries. Only names that are administrators are ever written here
-- (the foreign key holds the server to it): attempts on unknown names stay in each node's
-- bounded memory, so that guessing names cannot fill the database.
CREATE TABLE admin_sign_in_failures (
    username        TEXT PRIMARY KEY REFERENCES admins (username) ON DELETE CASCADE,
    failures        BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL
);
