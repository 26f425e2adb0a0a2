//! The storage contract of the customer's authorization (sessions, grants, codes, refresh
//! tokens), run against SQLite and, when configured, PostgreSQL: one test per method.

use keyfort::storage::{AuthorizationSession, CodeRecord, GrantRecord, RedeemError, RefreshTokenRecord};

use crate::storage::backends;

const NOW: i64 = 1_800_000_000;

fn session(hash: &str) -> AuthorizationSession {
    AuthorizationSession {
        session_hash: hash.into(),
        request: r#"{"client_id":"c"}"#.into(),
        csrf_hash: "csrf".into(),
        customer_id: None,
        customer_name: None,
        auth_time: None,
        acr: None,
        created_at: NOW,
        expires_at: NOW + 600,
        completed_at: None,
    }
}

fn grant(id: &str) -> GrantRecord {
    GrantRecord {
        grant_id: id.into(),
        client_id: "client".into(),
        consent_id: "aac-1".into(),
        customer_id: "customer".into(),
        scope: "openid accounts".into(),
        created_at: NOW,
        revoked_at: None,
    }
}

fn code(hash: &str, grant_id: &str) -> CodeRecord {
    CodeRecord {
        code_hash: hash.into(),
        grant_id: grant_id.into(),
        redirect_uri: "https://tpp.example/cb".into(),
        nonce: "n".into(),
        acr: "urn:openbanking:psd2:sca".into(),
        auth_time: NOW,
        code_challenge: Some("challenge".into()),
        expires_at: NOW + 60,
        redeemed_at: None,
    }
}

fn refresh(hash: &str, grant_id: &str) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: hash.into(),
        grant_id: grant_id.into(),
        cert_thumbprint: Some("x5t".into()),
        created_at: NOW,
        expires_at: NOW + 86_400,
        revoked_at: None,
    }
}

#[tokio::test]
async fn a_session_reads_back_and_signs_in_until_it_completes() {
    for b in backends().await {
        let s = session("s1");
        b.store.create_authorization_session(&s).await.unwrap();
        assert_eq!(b.store.find_authorization_session("s1").await.unwrap(), Some(s.clone()), "{}", b.name);
        assert!(b.store.find_authorization_session("nope").await.unwrap().is_none());

        assert!(b
            .store
            .sign_in_authorization_session("s1", "cust", "ann", NOW + 5, "urn:openbanking:psd2:ca", NOW + 5)
            .await
            .unwrap());
        let signed = b.store.find_authorization_session("s1").await.unwrap().unwrap();
        assert_eq!(signed.customer_id.as_deref(), Some("cust"), "{}", b.name);
        assert_eq!(signed.customer_name.as_deref(), Some("ann"), "{}", b.name);
        assert_eq!((signed.auth_time, signed.acr.as_deref()), (Some(NOW + 5), Some("urn:openbanking:psd2:ca")));
        // Expired sessions take no sign-in.
        assert!(!b.store.sign_in_authorization_session("s1", "cust", "ann", NOW, "a", NOW + 601).await.unwrap());
    }
}

#[tokio::test]
async fn a_session_completes_once() {
    for b in backends().await {
        b.store.create_authorization_session(&session("s2")).await.unwrap();
        assert!(b.store.complete_authorization_session("s2", NOW + 10).await.unwrap(), "{}", b.name);
        assert!(!b.store.complete_authorization_session("s2", NOW + 11).await.unwrap(), "{}: twice", b.name);
        assert!(
            !b.store.sign_in_authorization_session("s2", "c", "ann", NOW, "a", NOW + 12).await.unwrap(),
            "{}",
            b.name
        );
        b.store.create_authorization_session(&session("s3")).await.unwrap();
        assert!(!b.store.complete_authorization_session("s3", NOW + 601).await.unwrap(), "{}: expired", b.name);
    }
}

#[tokio::test]
async fn a_grant_and_its_code_are_created_together_and_read_back() {
    for b in backends().await {
        b.store.create_grant_with_code(&grant("g1"), &code("c1", "g1")).await.unwrap();
        assert_eq!(b.store.find_grant("g1").await.unwrap(), Some(grant("g1")), "{}", b.name);
        assert!(b.store.find_grant("none").await.unwrap().is_none());
        // A code hash used twice fails, and takes its grant with it.
        assert!(b.store.create_grant_with_code(&grant("g2"), &code("c1", "g2")).await.is_err(), "{}", b.name);
        assert!(b.store.find_grant("g2").await.unwrap().is_none(), "{}: rolled back", b.name);
    }
}

#[tokio::test]
async fn a_code_is_redeemed_once() {
    for b in backends().await {
        b.store.create_grant_with_code(&grant("g3"), &code("c3", "g3")).await.unwrap();
        let redeemed = b.store.redeem_code("c3", NOW + 5).await.unwrap();
        assert_eq!(redeemed, CodeRecord { redeemed_at: Some(NOW + 5), ..code("c3", "g3") }, "{}", b.name);
        match b.store.redeem_code("c3", NOW + 6).await {
            Err(RedeemError::AlreadyRedeemed { grant_id }) => assert_eq!(grant_id, "g3", "{}", b.name),
            other => panic!("{}: {other:?}", b.name),
        }
        assert!(matches!(b.store.redeem_code("unknown", NOW).await, Err(RedeemError::Unknown)), "{}", b.name);
    }
}

#[tokio::test]
async fn concurrent_redemptions_of_one_code_succeed_once() {
    for b in backends().await {
        b.store.create_grant_with_code(&grant("g4"), &code("c4", "g4")).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = b.store.clone();
            tasks.push(tokio::spawn(async move { store.redeem_code("c4", NOW + 1).await.is_ok() }));
        }
        let mut redeemed = 0;
        for task in tasks {
            redeemed += usize::from(task.await.unwrap());
        }
        assert_eq!(redeemed, 1, "{}", b.name);
    }
}

#[tokio::test]
async fn revoking_a_grant_revokes_its_refresh_tokens() {
    for b in backends().await {
        b.store.create_grant_with_code(&grant("g5"), &code("c5", "g5")).await.unwrap();
        b.store.create_refresh_token(&refresh("r5", "g5")).await.unwrap();
        assert!(b.store.revoke_grant("g5", NOW + 9).await.unwrap(), "{}", b.name);
        assert!(!b.store.revoke_grant("g5", NOW + 10).await.unwrap(), "{}: once", b.name);
        assert_eq!(b.store.find_grant("g5").await.unwrap().unwrap().revoked_at, Some(NOW + 9));
        assert_eq!(b.store.find_refresh_token("r5").await.unwrap().unwrap().revoked_at, Some(NOW + 9), "{}", b.name);
    }
}

#[tokio::test]
async fn a_refresh_token_reads_back_and_is_revoked_once() {
    for b in backends().await {
        b.store.create_grant_with_code(&grant("g6"), &code("c6", "g6")).await.unwrap();
        b.store.create_refresh_token(&refresh("r6", "g6")).await.unwrap();
        assert_eq!(b.store.find_refresh_token("r6").await.unwrap(), Some(refresh("r6", "g6")), "{}", b.name);
        assert!(b.store.find_refresh_token("none").await.unwrap().is_none());
        assert!(b.store.revoke_refresh_token("r6", NOW + 1).await.unwrap(), "{}", b.name);
        assert!(!b.store.revoke_refresh_token("r6", NOW + 2).await.unwrap(), "{}", b.name);
        assert!(b.store.create_refresh_token(&refresh("r6", "g6")).await.is_err(), "{}: one hash, one token", b.name);
    }
}

#[tokio::test]
async fn expired_sessions_and_codes_are_purged() {
    for b in backends().await {
        b.store.create_authorization_session(&session("old")).await.unwrap();
        b.store
            .create_authorization_session(&AuthorizationSession { expires_at: NOW + 10_000, ..session("new") })
            .await
            .unwrap();
        b.store.create_grant_with_code(&grant("g7"), &code("c7", "g7")).await.unwrap();
        assert_eq!(b.store.purge_expired_authorizations(NOW + 1_000).await.unwrap(), 2, "{}", b.name);
        assert!(b.store.find_authorization_session("old").await.unwrap().is_none());
        assert!(b.store.find_authorization_session("new").await.unwrap().is_some());
        assert!(matches!(b.store.redeem_code("c7", NOW).await, Err(RedeemError::Unknown)), "{}", b.name);
    }
}

#[tokio::test]
async fn every_grant_of_a_consent_is_revoked_with_its_refresh_tokens_and_audit_line() {
    for b in backends().await {
        let consent_grant = |id: &str, consent: &str| GrantRecord { consent_id: consent.into(), ..grant(id) };
        b.store.create_grant_with_code(&consent_grant("g8", "pdc-1"), &code("c8", "g8")).await.unwrap();
        b.store.create_grant_with_code(&consent_grant("g9", "pdc-1"), &code("c9", "g9")).await.unwrap();
        b.store.create_grant_with_code(&consent_grant("g10", "pdc-2"), &code("c10", "g10")).await.unwrap();
        b.store.create_refresh_token(&refresh("r8", "g8")).await.unwrap();
        b.store.create_refresh_token(&refresh("r10", "g10")).await.unwrap();
        b.store.revoke_grant("g9", NOW).await.unwrap();
        let line = keyfort::storage::AuditEvent {
            at: NOW + 5,
            action: "consent_revoke".into(),
            outcome: "success".into(),
            consent_id: Some("pdc-1".into()),
            ..Default::default()
        };

        assert_eq!(b.store.revoke_grants_of_consent("pdc-1", NOW + 5, &line).await.unwrap(), 1, "{}", b.name);
        assert_eq!(b.store.find_grant("g8").await.unwrap().unwrap().revoked_at, Some(NOW + 5), "{}", b.name);
        assert_eq!(b.store.find_grant("g9").await.unwrap().unwrap().revoked_at, Some(NOW), "{}: kept", b.name);
        assert_eq!(b.store.find_refresh_token("r8").await.unwrap().unwrap().revoked_at, Some(NOW + 5));
        // Another consent's grant and refresh token are untouched.
        assert_eq!(b.store.find_grant("g10").await.unwrap().unwrap().revoked_at, None, "{}", b.name);
        assert_eq!(b.store.find_refresh_token("r10").await.unwrap().unwrap().revoked_at, None, "{}", b.name);
        assert_eq!(b.store.consent_audit_events("pdc-1", 10).await.unwrap(), vec![line.clone()], "{}", b.name);
        // Nothing live is left: a second revocation changes nothing but is still audited.
        assert_eq!(b.store.revoke_grants_of_consent("pdc-1", NOW + 6, &line).await.unwrap(), 0, "{}", b.name);
        assert_eq!(b.store.consent_audit_events("pdc-1", 10).await.unwrap().len(), 2, "{}", b.name);
    }
}
