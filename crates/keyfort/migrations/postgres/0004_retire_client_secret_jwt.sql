-- client_secret_jwt can no longer be registered and no code ever verified its assertions, so
-- a client registered with it could never get a token. Retire such registrations: deleted,
-- their software free to register again with a supported method. Their stored method becomes
-- client_secret_basic (the secret-based method they were closest to) so that the rows stay
-- readable for the audit and admin views. serde_json writes the metadata without spaces.
UPDATE clients
SET status = 'deleted',
    active_software_id = NULL,
    metadata = replace(metadata, '"token_endpoint_auth_method":"client_secret_jwt"',
                       '"token_endpoint_auth_method":"client_secret_basic"')
WHERE metadata LIKE '%"token_endpoint_auth_method":"client_secret_jwt"%';
