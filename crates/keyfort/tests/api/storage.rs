//! The storage contract, run against every implementation: the embedded SQLite store
//! always, and PostgreSQL when `KEYFORT_TEST_POSTGRES_URL` names a server (CI sets it; when
//! it is not set each test reports `SKIPPED <test>: ...`, a failure under
//! `KEYFORT_TEST_STRICT=1`).
//!
//! Every `Store` method has a contract test here: `every_store_method_has_a_contract_test`
//! fails when a method is added without one. To add one, write
//!
//! ```ignore
//! #[tokio::test]
//! async fn contract_my_method() {
//!     for b in backends().await {
//!         b.store.my_method(...).await.unwrap();
//!         assert_eq!(..., "{}", b.name);
//!     }
//! }
//! ```
//!
//! `backends()` gives each test fresh, migrated databases; `client`, `replay`, `audit` and
//! `signing_key` build valid rows.

use std::sync::Arc;

use keyfort::storage::{
    AdminSignInState, AuditEvent, AuditFilter, ClientFilter, CreateClientError, JtiError, PostgresStore, ReplayRecord,
    SqliteStore, Store, StoredSigningKey,
};
use keyfort_core::registration::{
    ApplicationType, Approved, AuthMethod, ClientMetadata, ClientStatus, GrantType, RegisteredClient, ResponseType,
};

pub use crate::helpers::postgres_test_database;

pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh, migrated database of each implementation: SQLite always, PostgreSQL when
/// `KEYFORT_TEST_POSTGRES_URL` is set (otherwise the test reports itself skipped for it).
pub async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&format!("sqlite://{}", dir.path().join("contract.db").display())).await.unwrap();
    let mut all = vec![Backend { name: "sqlite", store: Arc::new(sqlite), _dir: Some(dir) }];
    if let Some(url) = postgres_test_database().await {
        all.push(Backend { name: "postgres", store: Arc::new(PostgresStore::open(&url).await.unwrap()), _dir: None });
    }
    all
}

fn client(software_id: &str) -> RegisteredClient {
    let approved = Approved {
        metadata: ClientMetadata {
            client_name: "Contract".into(),
            ext_application_display_name: None,
            redirect_uris: vec![keyfort_core::redirect_uri::RedirectUri::parse("https://tpp.example/cb").unwrap()],
            token_endpoint_auth_method: AuthMethod::PrivateKeyJwt,
            token_endpoint_auth_signing_alg: Some(keyfort_core::jose::SigningAlg::PS256),
            tls_client_auth_subject_dn: Some(keyfort_core::subject_dn::SubjectDn::parse("CN=a,O=b").unwrap()),
            grant_types: vec![GrantType::ClientCredentials],
            response_types: vec![ResponseType::CodeIdToken],
            application_type: ApplicationType::Web,
            scope: vec!["accounts".into()],
            id_token_signed_response_alg: None,
            request_object_signing_alg: None,
            require_signed_request_object: true,
            tls_client_certificate_bound_access_tokens: true,
            require_pushed_authorization_requests: false,
            jwks_uri: Some("https://keystore.example/o/s.jwks".parse().unwrap()),
            pkce_mandatory: false,
        },
        software_id: Some(software_id.into()),
        org_id: Some("org".into()),
        software_roles: vec!["AISP".into()],
        jti: "unused".into(),
        jti_issuer: software_id.into(),
        jti_expires_at: None,
    };
    RegisteredClient::new(approved, Some("ssa.jwt.here".into()), 1_800_000_000).0
}

fn audit() -> AuditEvent {
    AuditEvent { at: 1, action: "register".into(), outcome: "success".into(), ..Default::default() }
}

fn signing_key(kid: &str, activates_at: i64) -> StoredSigningKey {
    StoredSigningKey {
        kid: kid.into(),
        alg: "PS256".into(),
        private_key_pkcs8_b64: format!("key-of-{kid}"),
        created_at: 1_800_000_000,
        activates_at,
    }
}

fn replay(issuer: &str, jti: &str, expires_at: Option<i64>) -> ReplayRecord {
    ReplayRecord { issuer: issuer.into(), jti: jti.into(), expires_at, recorded_at: 1_800_000_000 }
}

#[tokio::test]
async fn a_created_client_reads_back_identically() {
    for b in backends().await {
        let c = client("s1");
        b.store.create_client(&c, &replay("s1", "j1", Some(1)), true, &audit()).await.unwrap();
        let read = b.store.find_client(&c.client_id).await.unwrap().expect(b.name);
        assert_eq!(read, c, "{}", b.name);
        assert_eq!(read.status, ClientStatus::Active);
        assert!(b.store.find_client("nobody").await.unwrap().is_none(), "{}", b.name);
        b.store.ping().await.unwrap();
    }
}

#[tokio::test]
async fn a_jti_is_accepted_once_per_issuer_and_a_refusal_stores_nothing() {
    for b in backends().await {
        let first = client("s1");
        b.store.create_client(&first, &replay("s1", "j1", None), false, &audit()).await.unwrap();
        let second = client("s1");
        let err = b.store.create_client(&second, &replay("s1", "j1", None), false, &audit()).await.unwrap_err();
        assert!(matches!(err, CreateClientError::JtiReplayed), "{}: {err}", b.name);
        assert!(b.store.find_client(&second.client_id).await.unwrap().is_none(), "{}", b.name);
        // The same jti from another issuer is a different request.
        b.store.create_client(&second, &replay("s2", "j1", None), false, &audit()).await.unwrap();
    }
}

#[tokio::test]
async fn one_active_registration_per_software_when_asked() {
    for b in backends().await {
        b.store.create_client(&client("s1"), &replay("s1", "a", None), true, &audit()).await.unwrap();
        let err = b.store.create_client(&client("s1"), &replay("s1", "b", None), true, &audit()).await.unwrap_err();
        assert!(matches!(err, CreateClientError::SoftwareAlreadyRegistered), "{}: {err}", b.name);
        // The refused attempt did not consume its jti.
        b.store.create_client(&client("s2"), &replay("s1", "b", None), true, &audit()).await.unwrap();
        // Without the rule, the same software may register again.
        b.store.create_client(&client("s3"), &replay("s3", "a", None), false, &audit()).await.unwrap();
        b.store.create_client(&client("s3"), &replay("s3", "b", None), false, &audit()).await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_registrations_of_one_software_yield_exactly_one_client() {
    for b in backends().await {
        let mut tasks = Vec::new();
        for n in 0..32 {
            let store = b.store.clone();
            tasks.push(tokio::spawn(async move {
                store.create_client(&client("race"), &replay("race", &format!("j{n}"), None), true, &audit()).await
            }));
        }
        let mut outcomes = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => outcomes.push(true),
                Err(CreateClientError::SoftwareAlreadyRegistered) => outcomes.push(false),
                Err(e) => panic!("{}: {e}", b.name),
            }
        }
        assert_eq!(outcomes.iter().filter(|created| **created).count(), 1, "{}", b.name);
        // A refused registration leaves nothing behind, though its jti was inserted before
        // its client was refused (on SQLite, in a group commit with the others): its jti
        // may be used again, the winner's may not.
        for (n, created) in outcomes.into_iter().enumerate() {
            let again = b.store.record_jti(&replay("race", &format!("j{n}"), None)).await;
            if created {
                assert!(matches!(again, Err(JtiError::Replayed)), "{}: the winner's jti j{n} was not kept", b.name);
            } else {
                assert!(again.is_ok(), "{}: the refused registration's jti j{n} was kept: {again:?}", b.name);
            }
        }
    }
}

#[tokio::test]
async fn expired_replay_records_are_purged() {
    for b in backends().await {
        b.store.create_client(&client("p1"), &replay("p1", "old", Some(100)), false, &audit()).await.unwrap();
        b.store.create_client(&client("p2"), &replay("p2", "new", Some(10_000)), false, &audit()).await.unwrap();
        b.store.create_client(&client("p3"), &replay("p3", "no-exp", None), false, &audit()).await.unwrap();
        // Recorded at 1_800_000_000: a record without exp is kept while it is younger than
        // the retention.
        assert_eq!(b.store.purge_expired_jtis(5_000, 1_799_000_000).await.unwrap(), 1, "{}", b.name);
        // The purged jti may be used again; the others may not.
        b.store.create_client(&client("p1"), &replay("p1", "old", Some(100)), false, &audit()).await.unwrap();
        assert!(b.store.create_client(&client("p2"), &replay("p2", "new", None), false, &audit()).await.is_err());
        assert!(b.store.create_client(&client("p3"), &replay("p3", "no-exp", None), false, &audit()).await.is_err());
        // Once older than the retention, a record without exp goes too: not kept for ever.
        assert_eq!(b.store.purge_expired_jtis(0, 1_800_000_001).await.unwrap(), 1, "{}", b.name);
        b.store.create_client(&client("p3"), &replay("p3", "no-exp", None), false, &audit()).await.unwrap();
    }
}

#[tokio::test]
async fn the_server_registers_on_postgres() {
    let Some(url) = postgres_test_database().await else { return };
    let options = crate::helpers::Options { storage_url: Some(url), ..Default::default() };
    let mut app = crate::helpers::spawn_app_with(options).await;
    let claims = app.request_claims();
    assert_eq!(app.register_json(&claims).await.status, 201);
    app.restart().await;
    app.register_json(&claims).await.assert_error(400, "invalid_client_metadata", "already been used");
}

#[tokio::test]
async fn administrators_are_stored_by_name_once() {
    for b in backends().await {
        assert!(b.store.admin_password_hash("ann").await.unwrap().is_none(), "{}", b.name);
        b.store.create_admin("ann", "$argon2id$hash", 1).await.unwrap();
        assert_eq!(b.store.admin_password_hash("ann").await.unwrap().as_deref(), Some("$argon2id$hash"));
        let again = b.store.create_admin("ann", "other", 2).await.unwrap_err();
        assert!(matches!(again, keyfort::storage::CreateAdminError::AdminExists), "{}: {again}", b.name);
    }
}

#[tokio::test]
async fn a_registration_and_its_audit_line_commit_together() {
    for b in backends().await {
        let c = client("audited");
        let line = keyfort::storage::AuditEvent { client_id: Some(c.client_id.clone()), ..audit() };
        b.store.create_client(&c, &replay("audited", "a", None), true, &line).await.unwrap();
        let refused = client("audited");
        let refused_line = keyfort::storage::AuditEvent { client_id: Some(refused.client_id.clone()), ..audit() };
        assert!(b.store.create_client(&refused, &replay("audited", "b", None), true, &refused_line).await.is_err());
        assert_eq!(b.store.audit_events(Some(&c.client_id), 10).await.unwrap(), vec![line], "{}", b.name);
        assert!(
            b.store.audit_events(Some(&refused.client_id), 10).await.unwrap().is_empty(),
            "{}: rolled back",
            b.name
        );
    }
}

#[tokio::test]
async fn an_update_and_its_audit_line_commit_together() {
    for b in backends().await {
        let c = client("updated");
        b.store.create_client(&c, &replay("updated", "a", None), true, &audit()).await.unwrap();
        let mut changed = c.clone();
        changed.metadata.client_name = "Renamed".into();
        let line =
            keyfort::storage::AuditEvent { action: "update".into(), client_id: Some(c.client_id.clone()), ..audit() };
        b.store.update_client(&changed, &replay("updated", "b", None), 2, &line).await.unwrap();
        assert_eq!(b.store.find_client(&c.client_id).await.unwrap().unwrap().metadata.client_name, "Renamed");
        assert_eq!(b.store.audit_events(Some(&c.client_id), 10).await.unwrap(), vec![line.clone()], "{}", b.name);

        // A replayed jti changes nothing and writes no audit line.
        let mut again = changed.clone();
        again.metadata.client_name = "Replayed".into();
        let err = b.store.update_client(&again, &replay("updated", "b", None), 3, &line).await.unwrap_err();
        assert!(matches!(err, CreateClientError::JtiReplayed), "{}: {err}", b.name);
        assert_eq!(b.store.find_client(&c.client_id).await.unwrap().unwrap().metadata.client_name, "Renamed");
        assert_eq!(b.store.audit_events(Some(&c.client_id), 10).await.unwrap().len(), 1, "{}", b.name);
    }
}

#[tokio::test]
async fn a_status_change_and_its_audit_line_commit_together() {
    for b in backends().await {
        let c = client("suspended");
        b.store.create_client(&c, &replay("suspended", "a", None), true, &audit()).await.unwrap();
        let line =
            keyfort::storage::AuditEvent { action: "suspend".into(), client_id: Some(c.client_id.clone()), ..audit() };
        let changed =
            b.store.set_client_status(&c.client_id, ClientStatus::Active, ClientStatus::Suspended, 2, &line).await;
        assert!(changed.unwrap(), "{}", b.name);
        assert_eq!(b.store.find_client(&c.client_id).await.unwrap().unwrap().status, ClientStatus::Suspended);
        // From a status the client is not in: no change, no audit line.
        let unchanged =
            b.store.set_client_status(&c.client_id, ClientStatus::Active, ClientStatus::Suspended, 3, &line).await;
        assert!(!unchanged.unwrap(), "{}", b.name);
        assert_eq!(b.store.audit_events(Some(&c.client_id), 10).await.unwrap(), vec![line], "{}", b.name);
    }
}

#[tokio::test]
async fn a_deletion_and_its_audit_line_commit_together() {
    for b in backends().await {
        let c = client("deleted");
        b.store.create_client(&c, &replay("deleted", "a", None), true, &audit()).await.unwrap();
        let line =
            keyfort::storage::AuditEvent { action: "delete".into(), client_id: Some(c.client_id.clone()), ..audit() };
        assert!(b.store.delete_client(&c.client_id, 2, &line).await.unwrap(), "{}", b.name);
        assert_eq!(b.store.find_client(&c.client_id).await.unwrap().unwrap().status, ClientStatus::Deleted);
        assert!(!b.store.delete_client(&c.client_id, 3, &line).await.unwrap(), "{}: already deleted", b.name);
        assert!(!b.store.delete_client("nobody", 3, &line).await.unwrap(), "{}", b.name);
        assert_eq!(b.store.audit_events(Some(&c.client_id), 10).await.unwrap(), vec![line], "{}", b.name);
        // The software may register again once its registration is deleted.
        b.store.create_client(&client("deleted"), &replay("deleted", "b", None), true, &audit()).await.unwrap();
    }
}

#[tokio::test]
async fn stored_client_secret_jwt_clients_are_retired_by_the_migration() {
    // A database from before client_secret_jwt was withdrawn: migrated up to 0003, holding
    // one such client and one ordinary client.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let options =
        <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url).unwrap().create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let mut before = sqlx::migrate!("./migrations/sqlite");
    before.migrations = std::borrow::Cow::Owned(before.migrations[..3].to_vec());
    before.run(&pool).await.unwrap();
    let ordinary = client("ordinary");
    let metadata = serde_json::to_string(&ordinary.metadata).unwrap();
    let withdrawn = metadata.replace("\"private_key_jwt\"", "\"client_secret_jwt\"");
    assert_ne!(metadata, withdrawn);
    for (id, software, metadata) in [("jwt-client", "sw-jwt", &withdrawn), ("ordinary", "sw-ok", &metadata)] {
        sqlx::query(
            "INSERT INTO clients (client_id, status, issued_at, updated_at, software_id, active_software_id, \
             software_roles, metadata, registration_token_hash) VALUES ($1, 'active', 1, 1, $2, $2, '[]', $3, 'x')",
        )
        .bind(id)
        .bind(software)
        .bind(metadata)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let store = SqliteStore::open(&url).await.unwrap();
    let retired = store.find_client("jwt-client").await.unwrap().expect("still readable");
    assert_eq!(retired.status, ClientStatus::Deleted);
    assert_eq!(retired.metadata.token_endpoint_auth_method, AuthMethod::ClientSecretBasic);
    assert_eq!(store.find_client("ordinary").await.unwrap().unwrap().status, ClientStatus::Active);
}

#[tokio::test]
async fn contract_ping() {
    for b in backends().await {
        b.store.ping().await.unwrap_or_else(|e| panic!("{}: {e}", b.name));
    }
}

#[tokio::test]
async fn contract_find_client() {
    for b in backends().await {
        assert!(b.store.find_client("nobody").await.unwrap().is_none(), "{}", b.name);
        let mut c = client("found");
        c.transport_certificate = None;
        c.client_secret_hash = None;
        b.store.create_client(&c, &replay("found", "a", None), true, &audit()).await.unwrap();
        assert_eq!(b.store.find_client(&c.client_id).await.unwrap(), Some(c), "{}: without certificate", b.name);
    }
}

#[tokio::test]
async fn contract_list_clients() {
    for b in backends().await {
        // Five clients over two organisations, issued at 100..500.
        let mut ids = Vec::new();
        for (n, org) in ["o1", "o1", "o2", "o2", "o2"].iter().enumerate() {
            let mut c = client(&format!("sw{n}"));
            c.org_id = Some((*org).into());
            c.client_id_issued_at = 100 * (n as i64 + 1);
            b.store.create_client(&c, &replay("i", &format!("j{n}"), None), true, &audit()).await.unwrap();
            ids.push(c.client_id);
        }
        b.store.set_client_status(&ids[4], ClientStatus::Active, ClientStatus::Suspended, 9, &audit()).await.unwrap();
        let list = |f: ClientFilter| {
            let store = b.store.clone();
            async move { store.list_clients(&f).await.unwrap().into_iter().map(|c| c.client_id).collect::<Vec<_>>() }
        };
        let all = ClientFilter { limit: 100, ..Default::default() };
        let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
        assert_eq!(list(all.clone()).await, newest_first, "{}: every parameter NULL", b.name);
        assert_eq!(list(ClientFilter { limit: 2, ..all.clone() }).await, newest_first[..2], "{}: limit", b.name);
        assert_eq!(
            list(ClientFilter { org_id: Some("o1".into()), ..all.clone() }).await,
            vec![ids[1].clone(), ids[0].clone()],
            "{}: org_id",
            b.name
        );
        assert_eq!(list(ClientFilter { software_id: Some("sw2".into()), ..all.clone() }).await, vec![ids[2].clone()]);
        assert_eq!(
            list(ClientFilter { status: Some(ClientStatus::Suspended), ..all.clone() }).await,
            vec![ids[4].clone()],
            "{}: status",
            b.name
        );
        assert_eq!(
            list(ClientFilter { registered_after: Some(200), registered_before: Some(500), ..all.clone() }).await,
            vec![ids[3].clone(), ids[2].clone()],
            "{}: both bounds are exclusive",
            b.name
        );
        assert_eq!(
            list(ClientFilter {
                org_id: Some("o2".into()),
                status: Some(ClientStatus::Active),
                registered_after: Some(300),
                ..all.clone()
            })
            .await,
            vec![ids[3].clone()],
            "{}: filters combine",
            b.name
        );
        assert!(list(ClientFilter { org_id: Some("none".into()), ..all }).await.is_empty(), "{}", b.name);
    }
}

#[tokio::test]
async fn contract_record_jti() {
    for b in backends().await {
        b.store.record_jti(&replay("client-a", "j1", Some(2_000_000_000))).await.unwrap();
        let again = b.store.record_jti(&replay("client-a", "j1", Some(2_000_000_000))).await.unwrap_err();
        assert!(matches!(again, JtiError::Replayed), "{}: {again}", b.name);
        b.store.record_jti(&replay("client-b", "j1", None)).await.unwrap();
        // A jti recorded by a registration is the same record.
        b.store.create_client(&client("s"), &replay("client-c", "j2", None), true, &audit()).await.unwrap();
        assert!(matches!(b.store.record_jti(&replay("client-c", "j2", None)).await, Err(JtiError::Replayed)));
    }
}

#[tokio::test]
async fn contract_revoke_token_and_is_token_revoked() {
    for b in backends().await {
        assert!(!b.store.is_token_revoked("t1").await.unwrap(), "{}", b.name);
        b.store.revoke_token("t1", "client", 2_000_000_000).await.unwrap();
        assert!(b.store.is_token_revoked("t1").await.unwrap(), "{}", b.name);
        // Revoking twice is not an error (RFC 7009: revocation is idempotent).
        b.store.revoke_token("t1", "client", 2_000_000_000).await.unwrap();
        assert!(!b.store.is_token_revoked("t2").await.unwrap(), "{}", b.name);
    }
}

#[tokio::test]
async fn contract_signing_keys_and_add_signing_key() {
    for b in backends().await {
        assert!(b.store.signing_keys().await.unwrap().is_empty(), "{}", b.name);
        let (later, first, same_time) =
            (signing_key("k-later", 300), signing_key("k-first", 100), signing_key("k-a", 300));
        for key in [&later, &first, &same_time] {
            b.store.add_signing_key(key).await.unwrap();
        }
        let keys = b.store.signing_keys().await.unwrap();
        assert_eq!(keys, vec![first.clone(), same_time, later], "{}: by activation, then kid", b.name);
        assert!(b.store.add_signing_key(&first).await.is_err(), "{}: a kid is unique", b.name);
    }
}

#[tokio::test]
async fn contract_replace_signing_key_material() {
    for b in backends().await {
        let key = signing_key("k-wrap", 100);
        b.store.add_signing_key(&key).await.unwrap();
        // Compare-and-set: replaced only while the stored value is the expected one.
        assert!(!b.store.replace_signing_key_material("k-wrap", "not-the-value", "x").await.unwrap(), "{}", b.name);
        assert!(b
            .store
            .replace_signing_key_material("k-wrap", &key.private_key_pkcs8_b64, "kek1.wrapped")
            .await
            .unwrap());
        assert!(!b.store.replace_signing_key_material("k-wrap", &key.private_key_pkcs8_b64, "again").await.unwrap());
        assert!(!b.store.replace_signing_key_material("no-such-kid", "kek1.wrapped", "x").await.unwrap());
        let stored = b.store.signing_keys().await.unwrap().remove(0);
        assert_eq!(stored, StoredSigningKey { private_key_pkcs8_b64: "kek1.wrapped".into(), ..key }, "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_create_first_signing_key() {
    for b in backends().await {
        // Nodes starting together on an empty database: exactly one first key. The tasks
        // wait for each other so that their transactions overlap, on connections opened
        // beforehand (opening one takes longer than the transaction).
        let warm: Vec<_> =
            (0..8).map(|_| b.store.clone()).map(|s| tokio::spawn(async move { s.ping().await })).collect();
        for task in warm {
            task.await.unwrap().unwrap();
        }
        let start = Arc::new(tokio::sync::Barrier::new(8));
        let mut tasks = Vec::new();
        for n in 0..8 {
            let (store, start) = (b.store.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                store.create_first_signing_key(&signing_key(&format!("k{n}"), 0)).await
            }));
        }
        let mut created = 0;
        for task in tasks {
            created += usize::from(task.await.unwrap().unwrap_or_else(|e| panic!("{}: {e}", b.name)));
        }
        assert_eq!(created, 1, "{}", b.name);
        assert_eq!(b.store.signing_keys().await.unwrap().len(), 1, "{}", b.name);
        assert!(!b.store.create_first_signing_key(&signing_key("late", 0)).await.unwrap(), "{}", b.name);
    }
}

#[tokio::test]
async fn contract_record_audit_and_audit_events() {
    for b in backends().await {
        for n in 0..3 {
            let line = AuditEvent {
                at: n,
                client_id: Some(if n == 1 { "other".into() } else { "mine".into() }),
                peer: Some("192.0.2.1".into()),
                detail: Some(format!("line {n}")),
                ..audit()
            };
            b.store.record_audit(&line).await.unwrap();
        }
        let mine = b.store.audit_events(Some("mine"), 10).await.unwrap();
        assert_eq!(mine.iter().map(|e| e.at).collect::<Vec<_>>(), vec![2, 0], "{}: newest first", b.name);
        assert_eq!(mine[0].detail.as_deref(), Some("line 2"));
        assert_eq!(b.store.audit_events(None, 10).await.unwrap().len(), 3, "{}: every client", b.name);
        assert_eq!(b.store.audit_events(None, 1).await.unwrap()[0].at, 2, "{}: limit", b.name);
        // Every field is capped on its way in, whoever built the line.
        let huge = "k".repeat(8192);
        let oversized = AuditEvent {
            at: 9,
            client_id: Some(huge.clone()),
            detail: Some(huge.clone()),
            cert_subject: Some(huge.clone()),
            software_id: Some(huge.clone()),
            ..audit()
        };
        b.store.record_audit(&oversized).await.unwrap();
        let stored = b.store.audit_events(None, 1).await.unwrap().remove(0);
        assert_eq!(stored, oversized.capped(), "{}", b.name);
        let caps = keyfort::storage::audit_caps::CLIENT_ID;
        assert_eq!(stored.client_id.unwrap().chars().count(), caps, "{}", b.name);
        assert!(stored.detail.unwrap().chars().count() <= keyfort::storage::audit_caps::DETAIL);
    }
}

#[tokio::test]
async fn contract_record_audit_lines() {
    for b in backends().await {
        // More lines than one multi-row insert takes, each field capped like a single line.
        let lines: Vec<AuditEvent> = (0..300)
            .map(|n| AuditEvent {
                at: n,
                action: "read".into(),
                client_id: Some(format!("client-{}", n % 3)),
                detail: Some(if n == 7 { "d".repeat(8192) } else { format!("line {n}") }),
                ..audit()
            })
            .collect();
        b.store.record_audit_lines(&lines).await.unwrap();
        b.store.record_audit_lines(&[]).await.unwrap();
        let stored = b.store.audit_events(None, 1000).await.unwrap();
        assert_eq!(stored.len(), 300, "{}", b.name);
        let mut expected: Vec<AuditEvent> = lines.iter().map(AuditEvent::capped).collect();
        expected.reverse();
        assert_eq!(stored, expected, "{}: every line, in order, capped", b.name);
        assert_eq!(b.store.audit_events(Some("client-1"), 1000).await.unwrap().len(), 100, "{}", b.name);
    }
}

#[tokio::test]
async fn contract_pool_status() {
    for b in backends().await {
        b.store.ping().await.unwrap();
        let status = b.store.pool_status().await;
        assert!(status.max >= 1 && status.open >= 1 && status.open <= status.max, "{}: {status:?}", b.name);
        assert!(status.idle <= status.open, "{}: {status:?}", b.name);
    }
}

#[tokio::test]
async fn contract_search_audit_events() {
    for b in backends().await {
        let lines = [
            (100, "register", "success", "c1", "org-a", "sw-1"),
            (200, "register", "unapproved_software_statement", "", "org-b", "sw-2"),
            (300, "read", "success", "c1", "org-a", "sw-1"),
            (400, "delete", "invalid_token", "c1", "org-a", "sw-1"),
        ];
        for (at, action, outcome, client, org, software) in lines {
            let line = AuditEvent {
                at,
                action: action.into(),
                outcome: outcome.into(),
                client_id: (!client.is_empty()).then(|| client.into()),
                org_id: Some(org.into()),
                software_id: Some(software.into()),
                ..audit()
            };
            b.store.record_audit(&line).await.unwrap();
        }
        let all = AuditFilter { limit: 100, ..AuditFilter::default() };
        let search = |filter: AuditFilter| {
            let store = b.store.clone();
            async move {
                store.search_audit_events(&filter).await.unwrap().into_iter().map(|(_, e)| e.at).collect::<Vec<_>>()
            }
        };
        assert_eq!(search(all.clone()).await, vec![100, 200, 300, 400], "{}: oldest first", b.name);
        assert_eq!(
            search(AuditFilter { since: Some(200), until: Some(400), ..all.clone() }).await,
            vec![200, 300],
            "{}",
            b.name
        );
        assert_eq!(
            search(AuditFilter { client_id: Some("c1".into()), ..all.clone() }).await,
            vec![100, 300, 400],
            "{}",
            b.name
        );
        assert_eq!(search(AuditFilter { org_id: Some("org-b".into()), ..all.clone() }).await, vec![200], "{}", b.name);
        assert_eq!(search(AuditFilter { software_id: Some("sw-1".into()), ..all.clone() }).await, vec![100, 300, 400]);
        assert_eq!(search(AuditFilter { action: Some("register".into()), ..all.clone() }).await, vec![100, 200]);
        assert_eq!(
            search(AuditFilter { outcome: Some("refused".into()), ..all.clone() }).await,
            vec![200, 400],
            "{}",
            b.name
        );
        assert_eq!(search(AuditFilter { outcome: Some("invalid_token".into()), ..all.clone() }).await, vec![400]);
        assert_eq!(search(AuditFilter { outcome: Some("success".into()), ..all.clone() }).await, vec![100, 300]);
        // Pages: the last id of one page starts the next.
        let first = b.store.search_audit_events(&AuditFilter { limit: 3, ..all.clone() }).await.unwrap();
        assert_eq!(first.len(), 3, "{}", b.name);
        let next = AuditFilter { after_id: Some(first[2].0), ..all.clone() };
        assert_eq!(search(next).await, vec![400], "{}: the next page", b.name);
    }
}

#[tokio::test]
async fn contract_create_admin_and_admin_password_hash() {
    for b in backends().await {
        b.store.create_admin("root", "$argon2id$root", 5).await.unwrap();
        assert_eq!(b.store.admin_password_hash("root").await.unwrap().as_deref(), Some("$argon2id$root"));
        assert_eq!(b.store.admin_password_hash("ROOT").await.unwrap(), None, "{}: names are exact", b.name);
    }
}

#[tokio::test]
async fn contract_admin_sign_in_failures() {
    for b in backends().await {
        assert_eq!(b.store.admin_sign_in_state("ann").await.unwrap(), None, "{}", b.name);
        b.store.create_admin("ann", "$argon2id$ann", 1).await.unwrap();
        let fresh = AdminSignInState { password_hash: "$argon2id$ann".into(), failures: 0, last_failure_at: None };
        assert_eq!(b.store.admin_sign_in_state("ann").await.unwrap(), Some(fresh.clone()), "{}", b.name);

        // Failures counted at once (several nodes) add up.
        let mut tasks = Vec::new();
        for n in 0..10 {
            let store = b.store.clone();
            tasks.push(tokio::spawn(async move { store.record_admin_sign_in_failure("ann", 1_000 + n).await }));
        }
        let mut counts: Vec<u32> = Vec::new();
        for task in tasks {
            counts.push(task.await.unwrap().unwrap_or_else(|e| panic!("{}: {e}", b.name)));
        }
        counts.sort_unstable();
        assert_eq!(counts, (1..=10).collect::<Vec<u32>>(), "{}: each failure sees its own count", b.name);
        assert_eq!(b.store.record_admin_sign_in_failure("ann", 2_000).await.unwrap(), 11);
        let state = b.store.admin_sign_in_state("ann").await.unwrap().unwrap();
        assert_eq!((state.failures, state.last_failure_at), (11, Some(2_000)), "{}", b.name);

        b.store.clear_admin_sign_in_failures("ann").await.unwrap();
        assert_eq!(b.store.admin_sign_in_state("ann").await.unwrap(), Some(fresh), "{}", b.name);
        b.store.clear_admin_sign_in_failures("nobody").await.unwrap();

        // Names that are not administrators are never written.
        assert!(b.store.record_admin_sign_in_failure("not-an-admin", 1).await.is_err(), "{}", b.name);
        assert_eq!(b.store.admin_sign_in_state("not-an-admin").await.unwrap(), None, "{}", b.name);
    }
}

/// Each method of the `Store` trait is called by at least one test in this file, so that a
/// method cannot reach PostgreSQL untested.
#[test]
fn every_store_method_has_a_contract_test() {
    // The Store trait, and the traits of concerns with their own file (`pub trait ...Store`),
    // each method called by a contract test in one of the storage test modules (`*storage.rs`).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut methods: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(root.join("src/storage")).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (at, _) in source.match_indices("pub trait ") {
            let trait_body = &source[at..];
            let trait_body = &trait_body[..trait_body.find("\n}\n").unwrap()];
            methods.extend(
                trait_body
                    .split("async fn ")
                    .skip(1)
                    .map(|rest| rest.split(['(', '<']).next().unwrap().trim().to_owned()),
            );
        }
    }
    assert!(methods.len() >= 30, "the scan finds the methods: {methods:?}");
    let mut tests = String::new();
    for entry in std::fs::read_dir(root.join("tests/api")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|name| name.to_string_lossy().ends_with("storage.rs")) {
            tests.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    let untested: Vec<&String> = methods.iter().filter(|m| !tests.contains(&format!("store.{m}("))).collect();
    assert!(untested.is_empty(), "Store methods without a contract test: {untested:?}");
}

// ----- Consents -----

fn consent(client_id: &str) -> keyfort_core::consent::Consent {
    use keyfort_core::consent::{Consent, ConsentRequest, ConsentType};
    let body = serde_json::json!({
        "Data": {"Permissions": ["ReadAccountsDetail", "ReadBalances"], "ExpirationDateTime": "2099-01-01T00:00:00+00:00"},
        "Risk": {}
    });
    let request = ConsentRequest::parse(ConsentType::AccountAccess, body.to_string().as_bytes()).unwrap();
    Consent::new(client_id, request, 1_800_000_000)
}

fn consent_line(action: &str, consent_id: &str) -> keyfort::storage::AuditEvent {
    keyfort::storage::AuditEvent {
        at: 1,
        action: action.into(),
        outcome: "success".into(),
        client_id: Some("tpp".into()),
        consent_id: Some(consent_id.into()),
        customer_id: Some("cust".into()),
        ..Default::default()
    }
}

fn key_record(consent_id: &str, key: &str, created_at: i64) -> keyfort::storage::IdempotencyRecord {
    keyfort::storage::IdempotencyRecord {
        client_id: "tpp".into(),
        consent_type: keyfort_core::consent::ConsentType::AccountAccess,
        key: key.into(),
        body_sha256: "ab".repeat(32),
        consent_id: consent_id.into(),
        created_at,
    }
}

#[tokio::test]
async fn a_consent_reads_back_identically_with_its_audit_line() {
    for b in backends().await {
        let c = consent("tpp");
        let line = consent_line("consent_create", &c.id);
        b.store.create_consent(&c, None, 0, &line).await.unwrap();
        assert_eq!(b.store.find_consent(&c.id).await.unwrap().as_ref(), Some(&c), "{}", b.name);
        assert!(b.store.find_consent("aac-nobody").await.unwrap().is_none(), "{}", b.name);
        assert_eq!(b.store.consent_audit_events(&c.id, 10).await.unwrap(), vec![line], "{}", b.name);
    }
}

#[tokio::test]
async fn an_idempotency_key_is_taken_once_while_it_lives() {
    use keyfort::storage::CreateConsentError;
    use keyfort_core::consent::ConsentType;
    for b in backends().await {
        let first = consent("tpp");
        b.store
            .create_consent(&first, Some(&key_record(&first.id, "k1", 1000)), 500, &consent_line("c", &first.id))
            .await
            .unwrap();
        let found = b.store.find_idempotency_record("tpp", ConsentType::AccountAccess, "k1", 900).await.unwrap();
        assert_eq!(found, Some(key_record(&first.id, "k1", 1000)), "{}", b.name);
        // Past the idempotency period the record is not found ...
        assert!(b
            .store
            .find_idempotency_record("tpp", ConsentType::AccountAccess, "k1", 1001)
            .await
            .unwrap()
            .is_none());
        // ... and per client and type.
        assert!(b.store.find_idempotency_record("other", ConsentType::AccountAccess, "k1", 0).await.unwrap().is_none());
        assert!(b
            .store
            .find_idempotency_record("tpp", ConsentType::FundsConfirmation, "k1", 0)
            .await
            .unwrap()
            .is_none());

        // A live key refuses a second consent, and nothing of it is written.
        let second = consent("tpp");
        let err = b
            .store
            .create_consent(&second, Some(&key_record(&second.id, "k1", 1100)), 900, &consent_line("c", &second.id))
            .await
            .unwrap_err();
        assert!(matches!(err, CreateConsentError::IdempotencyKeyTaken), "{}: {err}", b.name);
        assert!(b.store.find_consent(&second.id).await.unwrap().is_none(), "{}", b.name);
        assert!(b.store.consent_audit_events(&second.id, 10).await.unwrap().is_empty(), "{}", b.name);

        // An expired key gives way to a new consent.
        b.store
            .create_consent(&second, Some(&key_record(&second.id, "k1", 2000)), 1500, &consent_line("c", &second.id))
            .await
            .unwrap();
        let found =
            b.store.find_idempotency_record("tpp", ConsentType::AccountAccess, "k1", 1500).await.unwrap().unwrap();
        assert_eq!(found.consent_id, second.id, "{}", b.name);

        // Purging forgets old keys only.
        let third = consent("tpp");
        b.store
            .create_consent(&third, Some(&key_record(&third.id, "k2", 100)), 0, &consent_line("c", &third.id))
            .await
            .unwrap();
        assert_eq!(b.store.purge_idempotency_records(1000).await.unwrap(), 1, "{}", b.name);
        assert!(b.store.find_idempotency_record("tpp", ConsentType::AccountAccess, "k2", 0).await.unwrap().is_none());
        assert!(b.store.find_consent(&third.id).await.unwrap().is_some(), "the consent stays");
    }
}

#[tokio::test]
async fn consents_are_listed_newest_first_by_every_filter() {
    use keyfort::storage::{ConsentFilter, GrantRecord};
    use keyfort_core::consent::{ConsentStatus, ConsentType};
    for b in backends().await {
        let mut older = consent("tpp-a");
        older.created_at = 1_800_000_000;
        let mut newer = consent("tpp-b");
        newer.created_at = 1_800_000_100;
        newer.customer_id = Some("cust-1".into());
        newer.status = ConsentStatus::Authorised;
        for c in [&older, &newer] {
            b.store.create_consent(c, None, 0, &consent_line("consent_create", &c.id)).await.unwrap();
        }
        let list = |filter: ConsentFilter| {
            let store = b.store.clone();
            async move { store.list_consents(&filter).await.unwrap().into_iter().map(|c| c.id).collect::<Vec<_>>() }
        };
        let all = ConsentFilter { limit: 10, ..Default::default() };
        assert_eq!(list(all.clone()).await, vec![newer.id.clone(), older.id.clone()], "{}", b.name);
        assert_eq!(list(ConsentFilter { limit: 1, ..all.clone() }).await, vec![newer.id.clone()], "{}", b.name);
        assert_eq!(
            list(ConsentFilter { client_id: Some("tpp-a".into()), ..all.clone() }).await,
            vec![older.id.clone()]
        );
        assert_eq!(
            list(ConsentFilter { customer_id: Some("cust-1".into()), ..all.clone() }).await,
            vec![newer.id.clone()]
        );
        assert_eq!(
            list(ConsentFilter { status: Some(ConsentStatus::AwaitingAuthorisation), ..all.clone() }).await,
            vec![older.id.clone()],
            "{}",
            b.name
        );
        assert!(list(ConsentFilter { kind: Some(ConsentType::DomesticPayment), ..all.clone() }).await.is_empty());
        assert_eq!(
            list(ConsentFilter { created_after: Some(1_800_000_050), ..all.clone() }).await,
            vec![newer.id.clone()]
        );
        assert_eq!(
            list(ConsentFilter { created_before: Some(1_800_000_050), ..all.clone() }).await,
            vec![older.id.clone()]
        );
        // Only consents whose TPP still holds a live grant.
        let live = ConsentFilter { with_live_grant: true, ..all.clone() };
        assert!(list(live.clone()).await.is_empty(), "{}", b.name);
        let grant = GrantRecord {
            grant_id: "g-list".into(),
            client_id: "tpp-b".into(),
            consent_id: newer.id.clone(),
            customer_id: "cust-1".into(),
            scope: "openid accounts".into(),
            created_at: 1_800_000_100,
            revoked_at: None,
        };
        let code = keyfort::storage::CodeRecord {
            code_hash: "code-list".into(),
            grant_id: "g-list".into(),
            redirect_uri: "https://tpp.example/cb".into(),
            nonce: "n".into(),
            acr: "urn:openbanking:psd2:ca".into(),
            auth_time: 1_800_000_100,
            code_challenge: None,
            expires_at: 1_800_000_160,
            redeemed_at: None,
        };
        b.store.create_grant_with_code(&grant, &code).await.unwrap();
        assert_eq!(list(live.clone()).await, vec![newer.id.clone()], "{}", b.name);
        b.store.revoke_grant("g-list", 1_800_000_200).await.unwrap();
        assert!(list(live).await.is_empty(), "{}: revoked grants do not count", b.name);
    }
}

#[tokio::test]
async fn consent_status_changes_are_compare_and_set_with_their_audit_line() {
    use keyfort::storage::ConsentStatusChange;
    use keyfort_core::consent::ConsentStatus::*;
    for b in backends().await {
        let c = consent("tpp");
        b.store.create_consent(&c, None, 0, &consent_line("consent_create", &c.id)).await.unwrap();
        let authorise = ConsentStatusChange {
            consent_id: c.id.clone(),
            from: AwaitingAuthorisation,
            to: Authorised,
            at: 1_800_000_100,
            customer_id: Some("cust".into()),
            account_ids: Some(vec!["acc-1".into(), "acc-2".into()]),
        };
        let line = consent_line("consent_authorise", &c.id);
        assert!(b.store.change_consent_status(&authorise, &line).await.unwrap(), "{}", b.name);
        let read = b.store.find_consent(&c.id).await.unwrap().unwrap();
        assert_eq!((read.status, read.status_updated_at), (Authorised, 1_800_000_100), "{}", b.name);
        assert_eq!(read.customer_id.as_deref(), Some("cust"));
        assert_eq!(read.account_ids, vec!["acc-1", "acc-2"]);

        // A second decision finds the consent no longer awaiting: nothing changes or is written.
        let reject = ConsentStatusChange {
            to: Rejected,
            customer_id: Some("mallory".into()),
            account_ids: None,
            ..authorise.clone()
        };
        assert!(!b.store.change_consent_status(&reject, &consent_line("consent_reject", &c.id)).await.unwrap());
        assert_eq!(b.store.find_consent(&c.id).await.unwrap().unwrap().status, Authorised, "{}", b.name);

        // Revoking keeps the customer and the accounts.
        let revoke = ConsentStatusChange {
            from: Authorised,
            to: Revoked,
            at: 1_800_000_200,
            customer_id: None,
            account_ids: None,
            ..authorise
        };
        assert!(b.store.change_consent_status(&revoke, &consent_line("consent_revoke", &c.id)).await.unwrap());
        let read = b.store.find_consent(&c.id).await.unwrap().unwrap();
        assert_eq!((read.status, read.customer_id.as_deref()), (Revoked, Some("cust")), "{}", b.name);
        assert_eq!(read.account_ids, vec!["acc-1", "acc-2"], "{}", b.name);

        let story: Vec<String> =
            b.store.consent_audit_events(&c.id, 10).await.unwrap().into_iter().rev().map(|e| e.action).collect();
        assert_eq!(story, vec!["consent_create", "consent_authorise", "consent_revoke"], "{}", b.name);
    }
}

// ----- Customers -----

fn customer(id: &str, username: &str) -> keyfort::storage::StoredCustomer {
    keyfort::storage::StoredCustomer {
        customer_id: id.into(),
        username: username.into(),
        password_hash: "$argon2id$hash".into(),
        totp_secret: Some("JBSWY3DPEHPK3PXP".into()),
        totp_last_step: None,
        failed_logins: 0,
        locked_until: None,
        created_at: 1,
    }
}

fn account(id: &str, customer_id: &str) -> keyfort::storage::CustomerAccount {
    keyfort::storage::CustomerAccount {
        account_id: id.into(),
        customer_id: customer_id.into(),
        name: format!("Account {id}"),
        scheme: "UK.OBIE.SortCodeAccountNumber".into(),
        identification: "60304560123456".into(),
        secondary_identification: None,
        currency: "GBP".into(),
    }
}

#[tokio::test]
async fn customers_and_their_accounts() {
    use keyfort::storage::{AddAccountError, CreateCustomerError};
    for b in backends().await {
        let ann = customer("c-ann", "ann");
        b.store.create_customer(&ann).await.unwrap();
        b.store.create_customer(&customer("c-bob", "bob")).await.unwrap();
        let taken = b.store.create_customer(&customer("c-other", "ann")).await.unwrap_err();
        assert!(matches!(taken, CreateCustomerError::UsernameTaken), "{}: {taken}", b.name);
        assert_eq!(b.store.find_customer_by_username("ann").await.unwrap().as_ref(), Some(&ann), "{}", b.name);
        assert_eq!(b.store.find_customer("c-ann").await.unwrap().as_ref(), Some(&ann), "{}", b.name);
        assert!(b.store.find_customer_by_username("Ann").await.unwrap().is_none(), "usernames are exact");
        let names: Vec<String> = b.store.list_customers().await.unwrap().into_iter().map(|c| c.username).collect();
        assert_eq!(names, vec!["ann", "bob"], "{}", b.name);

        b.store.add_customer_account(&account("acc-2", "c-ann"), 5).await.unwrap();
        b.store.add_customer_account(&account("acc-1", "c-ann"), 5).await.unwrap();
        let mut with_secondary = account("acc-3", "c-bob");
        with_secondary.secondary_identification = Some("roll-1".into());
        b.store.add_customer_account(&with_secondary, 5).await.unwrap();
        let again = b.store.add_customer_account(&account("acc-1", "c-bob"), 5).await.unwrap_err();
        assert!(matches!(again, AddAccountError::AccountIdTaken), "{}: {again}", b.name);
        let orphan = b.store.add_customer_account(&account("acc-9", "c-nobody"), 5).await.unwrap_err();
        assert!(matches!(orphan, AddAccountError::NoSuchCustomer), "{}: {orphan}", b.name);
        assert_eq!(
            b.store.customer_accounts("c-ann").await.unwrap(),
            vec![account("acc-1", "c-ann"), account("acc-2", "c-ann")],
            "{}",
            b.name
        );
        assert_eq!(b.store.customer_accounts("c-bob").await.unwrap(), vec![with_secondary], "{}", b.name);
        assert!(b.store.customer_accounts("c-nobody").await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn failed_sign_ins_lock_a_customer_and_success_clears_them() {
    for b in backends().await {
        b.store.create_customer(&customer("c-ann", "ann")).await.unwrap();
        for _ in 0..2 {
            assert_eq!(b.store.record_customer_failure("c-ann", 3, 9_000).await.unwrap(), None, "{}", b.name);
        }
        assert_eq!(b.store.find_customer("c-ann").await.unwrap().unwrap().failed_logins, 2, "{}", b.name);
        // The third failure locks, and the count starts again.
        assert_eq!(b.store.record_customer_failure("c-ann", 3, 9_000).await.unwrap(), Some(9_000), "{}", b.name);
        let locked = b.store.find_customer("c-ann").await.unwrap().unwrap();
        assert_eq!((locked.failed_logins, locked.locked_until), (0, Some(9_000)), "{}", b.name);
        assert_eq!(b.store.record_customer_failure("c-nobody", 3, 9_000).await.unwrap(), None);

        // Success clears failures and lock.
        b.store.record_customer_failure("c-ann", 3, 9_500).await.unwrap();
        assert!(b.store.record_customer_success("c-ann", None).await.unwrap(), "{}", b.name);
        let cleared = b.store.find_customer("c-ann").await.unwrap().unwrap();
        assert_eq!((cleared.failed_logins, cleared.locked_until), (0, None), "{}", b.name);
    }
}

#[tokio::test]
async fn a_one_time_code_step_is_accepted_once() {
    for b in backends().await {
        b.store.create_customer(&customer("c-ann", "ann")).await.unwrap();
        assert!(b.store.record_customer_success("c-ann", Some(100)).await.unwrap(), "{}", b.name);
        assert!(!b.store.record_customer_success("c-ann", Some(100)).await.unwrap(), "{}: replayed step", b.name);
        assert!(!b.store.record_customer_success("c-ann", Some(99)).await.unwrap(), "{}: older step", b.name);
        assert!(b.store.record_customer_success("c-ann", Some(101)).await.unwrap(), "{}", b.name);
        assert!(b.store.record_customer_success("c-ann", None).await.unwrap(), "{}: no code keeps the step", b.name);
        assert_eq!(b.store.find_customer("c-ann").await.unwrap().unwrap().totp_last_step, Some(101), "{}", b.name);
        assert!(!b.store.record_customer_success("c-nobody", None).await.unwrap());
    }
}

#[tokio::test]
async fn concurrent_failures_all_count() {
    for b in backends().await {
        b.store.create_customer(&customer("c-ann", "ann")).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = b.store.clone();
            tasks.push(tokio::spawn(async move { store.record_customer_failure("c-ann", 100, 9_000).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(b.store.find_customer("c-ann").await.unwrap().unwrap().failed_logins, 8, "{}", b.name);
    }
}

#[tokio::test]
async fn concurrent_writes_each_get_their_own_answer_and_all_that_succeeded_are_kept() {
    // On SQLite these are committed in groups by one writer: a refused write (a replayed
    // jti) must not take the others of its group with it, and every write answered Ok must
    // be there afterwards.
    for b in backends().await {
        let writes = (0..200).map(|i| {
            let store = b.store.clone();
            // Every tenth jti is sent twice: one of the two must be refused.
            let jti = format!("jti-{}", if i % 10 == 9 { i - 1 } else { i });
            tokio::spawn(async move { (jti.clone(), store.record_jti(&replay("iss", &jti, None)).await) })
        });
        let mut accepted = Vec::new();
        let mut replayed = 0;
        for write in writes.collect::<Vec<_>>() {
            match write.await.unwrap() {
                (jti, Ok(())) => accepted.push(jti),
                (_, Err(JtiError::Replayed)) => replayed += 1,
                (_, Err(other)) => panic!("{}: {other:?}", b.name),
            }
        }
        assert_eq!((accepted.len(), replayed), (180, 20), "{}", b.name);
        for jti in accepted {
            assert!(
                matches!(b.store.record_jti(&replay("iss", &jti, None)).await, Err(JtiError::Replayed)),
                "{}: {jti} was answered Ok but is not kept",
                b.name
            );
        }
    }
}
