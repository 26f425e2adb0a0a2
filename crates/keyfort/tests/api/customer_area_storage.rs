//! The storage contract of the customer's own pages (their sessions), run against SQLite
//! and, when configured, PostgreSQL: one test per method.

use keyfort::storage::CustomerSession;

use crate::storage::backends;

const NOW: i64 = 1_800_000_000;

fn session(hash: &str, expires_at: i64) -> CustomerSession {
    CustomerSession {
        session_hash: hash.into(),
        customer_id: "cust-1".into(),
        customer_name: "ann".into(),
        csrf_hash: format!("csrf-of-{hash}"),
        created_at: NOW,
        expires_at,
    }
}

#[tokio::test]
async fn a_customer_session_reads_back_until_it_expires() {
    for b in backends().await {
        b.store.create_customer_session(&session("s1", NOW + 900)).await.unwrap();
        assert_eq!(
            b.store.find_customer_session("s1", NOW + 10).await.unwrap(),
            Some(session("s1", NOW + 900)),
            "{}",
            b.name
        );
        assert!(b.store.find_customer_session("s1", NOW + 900).await.unwrap().is_none(), "{}: expired", b.name);
        assert!(b.store.find_customer_session("nope", NOW).await.unwrap().is_none(), "{}", b.name);
        assert!(b.store.create_customer_session(&session("s1", NOW + 5)).await.is_err(), "{}: one hash", b.name);
    }
}

#[tokio::test]
async fn signing_out_ends_a_customer_session_once() {
    for b in backends().await {
        b.store.create_customer_session(&session("s2", NOW + 900)).await.unwrap();
        assert!(b.store.end_customer_session("s2").await.unwrap(), "{}", b.name);
        assert!(b.store.find_customer_session("s2", NOW).await.unwrap().is_none(), "{}", b.name);
        assert!(!b.store.end_customer_session("s2").await.unwrap(), "{}: twice", b.name);
    }
}

#[tokio::test]
async fn expired_customer_sessions_are_purged() {
    for b in backends().await {
        b.store.create_customer_session(&session("old", NOW + 10)).await.unwrap();
        b.store.create_customer_session(&session("new", NOW + 10_000)).await.unwrap();
        assert_eq!(b.store.purge_expired_customer_sessions(NOW + 1_000).await.unwrap(), 1, "{}", b.name);
        assert!(b.store.find_customer_session("new", NOW).await.unwrap().is_some(), "{}", b.name);
        assert!(b.store.find_customer_session("old", NOW).await.unwrap().is_none(), "{}", b.name);
    }
}
