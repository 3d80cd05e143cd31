//! Sealing at rest, against the machine's Redis: nothing secret is readable in Redis, keys
//! rotate, and a record that does not open is refused and kept, never served or deleted.

mod common;

use std::time::Duration;

use fred::prelude::*;
use wechat_oauth::{AccessToken, RefreshToken, SessionKey};
use wechat_redis_store::RedisStore;
use wechat_sessions::conformance::sample_record;
use wechat_sessions::{
    CasOutcome, Clock, Credentials, ManualClock, SessionStore, SharedStore, StoreError,
};

fn store(client: &Client, prefix: &str, keys: &[(&str, u8)]) -> RedisStore {
    let mut builder = RedisStore::builder(&common::redis_url(), common::key(keys[0].0, keys[0].1))
        .unwrap()
        .prefix(prefix);
    for (kid, byte) in &keys[1..] {
        builder = builder.previous_key(common::key(kid, *byte));
    }
    builder.with_client(client.clone())
}

#[tokio::test]
async fn no_secret_is_readable_in_redis() {
    let Some(client) = common::machine_redis().await else {
        return;
    };
    let clock = ManualClock::starting_now();
    let prefix = common::random_prefix();
    let store = store(&client, &prefix, &[("k1", 1)]);
    let mut oauth = sample_record(&clock, "wxapp", "alice");
    oauth.credentials = Credentials::OAuth {
        access_token: AccessToken::new("ACCESS-SECRET-0001"),
        access_token_expires_at: clock.now() + Duration::from_secs(7200),
        refresh_token: RefreshToken::new("REFRESH-SECRET-0001"),
    };
    let mut mini = sample_record(&clock, "wxapp", "bob");
    mini.credentials = Credentials::MiniProgram {
        session_key: SessionKey::new("SESSIONKEY-SECRET-0001"),
    };
    store.insert(oauth).await.unwrap();
    store.insert(mini).await.unwrap();

    let keys: Vec<String> = {
        let mut scan = client.scan_buffered(format!("{prefix}:*"), Some(100), None);
        let mut keys = Vec::new();
        use futures::TryStreamExt;
        while let Some(key) = scan.try_next().await.unwrap() {
            keys.push(key.as_str().unwrap().to_owned());
        }
        keys
    };
    assert_eq!(keys.len(), 4, "two records, two index buckets: {keys:?}");
    for key in keys {
        let kind: String = client.r#type(&key).await.unwrap();
        let bytes: Vec<u8> = match kind.as_str() {
            "string" => client.get(&key).await.unwrap(),
            _ => {
                let members: Vec<fred::types::Value> = client
                    .zrange(&key, 0, -1, None, false, None, false)
                    .await
                    .unwrap();
                members
                    .iter()
                    .filter_map(|m| m.as_bytes())
                    .flat_map(|m| m.iter().copied())
                    .collect()
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("SECRET"),
            "{key} holds a secret in the clear"
        );
    }
}

/// Break to see it fail: `Sealer` sealing with the key that opened the record (or the first
/// previous key) instead of the current one.
#[tokio::test]
async fn keys_rotate_and_an_unknown_key_is_refused_without_deleting() {
    let Some(client) = common::machine_redis().await else {
        return;
    };
    let clock = ManualClock::starting_now();
    let prefix = common::random_prefix();
    let old = store(&client, &prefix, &[("k1", 1)]);
    let record = sample_record(&clock, "wxapp", "carol");
    old.insert(record.clone()).await.unwrap();

    // k2 seals now, k1 still opens: the old record is served, and a write reseals it under k2.
    let rotating = store(&client, &prefix, &[("k2", 2), ("k1", 1)]);
    let got = rotating.get(&record.sid).await.unwrap().unwrap();
    assert_eq!(*got, record);
    let mut confirmed = (*got).clone();
    confirmed.confirmed_at += Duration::from_secs(1);
    let written = rotating
        .compare_and_set(got.version, confirmed)
        .await
        .unwrap();
    assert!(matches!(written, CasOutcome::Stored(_)));
    let k2_only = store(&client, &prefix, &[("k2", 2)]);
    let resealed = k2_only.get(&record.sid).await.unwrap().unwrap();
    assert_eq!(resealed.version, got.version + 1, "resealed under k2");
    let unrotated = sample_record(&clock, "wxapp", "dave");
    old.insert(unrotated.clone()).await.unwrap();

    // k1 dropped: its records are refused as corrupt, and kept.
    let rotated = store(&client, &prefix, &[("k2", 2)]);
    match rotated.get(&unrotated.sid).await {
        Err(StoreError::Corrupt(why)) => assert!(why.contains("k1"), "{why}"),
        other => panic!("expected a corrupt record, got {other:?}"),
    }
    assert!(
        rotating.get(&unrotated.sid).await.unwrap().is_some(),
        "the record is still there for a server that has the key"
    );
    let fresh = sample_record(&clock, "wxapp", "erin");
    rotating.insert(fresh.clone()).await.unwrap();
    assert!(
        rotated.get(&fresh.sid).await.unwrap().is_some(),
        "sealed under k2"
    );
}

#[tokio::test]
async fn a_sealed_value_moved_into_another_record_is_refused() {
    let Some(client) = common::machine_redis().await else {
        return;
    };
    let clock = ManualClock::starting_now();
    let prefix = common::random_prefix();
    let store = store(&client, &prefix, &[("k1", 1)]);
    let victim = sample_record(&clock, "wxapp", "victim");
    let attacker = sample_record(&clock, "wxapp", "attacker");
    store.insert(victim.clone()).await.unwrap();
    store.insert(attacker.clone()).await.unwrap();
    // Someone with write access to Redis copies the victim's sealed record over their own.
    let value: Vec<u8> = client.get(store.record_key(&victim.sid)).await.unwrap();
    let _: () = client
        .set(store.record_key(&attacker.sid), value, None, None, false)
        .await
        .unwrap();
    assert!(matches!(
        store.get(&attacker.sid).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(store.get(&victim.sid).await.unwrap().is_some());
}

#[tokio::test]
async fn shared_secrets_are_sealed_replaced_expire_and_bound_to_their_name() {
    let Some(client) = common::machine_redis().await else {
        return;
    };
    let prefix = common::random_prefix();
    let store = store(&client, &prefix, &[("k1", 1)]);
    assert_eq!(store.get_secret("apptoken:wxapp").await.unwrap(), None);
    store
        .put_secret(
            "apptoken:wxapp",
            b"APP-TOKEN-SECRET-1".to_vec(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    store
        .put_secret(
            "apptoken:wxapp",
            b"APP-TOKEN-SECRET-2".to_vec(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_secret("apptoken:wxapp").await.unwrap().as_deref(),
        Some(&b"APP-TOKEN-SECRET-2"[..]),
        "a put replaces"
    );
    let raw: Vec<u8> = client
        .get(store.secret_key("apptoken:wxapp"))
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("SECRET"));
    let ttl: i64 = client
        .pttl(store.secret_key("apptoken:wxapp"))
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");

    // Copied under another name, it does not open (and is reported, not served).
    let _: () = client
        .set(store.secret_key("apptoken:wxother"), raw, None, None, false)
        .await
        .unwrap();
    assert!(matches!(
        store.get_secret("apptoken:wxother").await,
        Err(StoreError::Corrupt(_))
    ));
}
