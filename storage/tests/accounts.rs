//! Accounts, sessions, API tokens and the audit log against both backends.

mod support;

use carrier_core::auth::{Role, Scope};
use carrier_storage::{
    AuditFilter, GitState, NewAuditEntry, Store, StoreError, hash_password, verify_password,
};
use jiff::SignedDuration;
use serde_json::json;

const DAY: SignedDuration = SignedDuration::from_hours(24);

async fn users_are_added_listed_changed_and_removed(url: &str) {
    let store = Store::open(url).await.unwrap();
    let scope = Scope::parse(&["tag:ci", "pxe-server#*"]).unwrap();
    let hash = hash_password("correct horse").unwrap();
    // the parameters chosen for about 60 ms per sign-in (docs/benchmarks.md), not the crate's
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=6,p=1$"), "{hash}");
    store.add_user("bob", &hash, Role::Deployer, Some(&scope)).await.unwrap();
    store.add_user("alice", &hash, Role::Admin, None).await.unwrap();
    let err = store.add_user("bob", &hash, Role::Viewer, None).await.unwrap_err();
    assert_eq!(err.to_string(), "a user named 'bob' exists already");

    let users = store.users().await.unwrap();
    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(users[1].role, Role::Deployer);
    assert_eq!(users[1].scope.as_ref().unwrap().terms(), ["tag:ci", "pxe-server#*"]);
    assert_eq!(users[0].scope, None);
    assert!(!users[0].disabled);

    let (_, stored) = store.credentials("bob").await.unwrap().unwrap();
    assert!(verify_password(&stored, "correct horse"));
    assert!(!verify_password(&stored, "wrong"));
    store.set_password("bob", &hash_password("new one").unwrap()).await.unwrap();
    let (_, stored) = store.credentials("bob").await.unwrap().unwrap();
    assert!(verify_password(&stored, "new one"));
    assert!(!verify_password(&stored, "correct horse"));
    assert!(
        matches!(store.set_password("eve", &hash).await, Err(StoreError::NoUser(n)) if n == "eve")
    );

    store.remove_user("bob").await.unwrap();
    assert_eq!(store.user("bob").await.unwrap(), None);
    assert!(matches!(store.remove_user("bob").await, Err(StoreError::NoUser(_))));
}
on_both_backends!(users_are_added_listed_changed_and_removed);

async fn sessions_are_stored_hashed_expire_and_are_revoked(url: &str) {
    let store = Store::open(url).await.unwrap();
    let bob =
        store.add_user("bob", &hash_password("pw").unwrap(), Role::Viewer, None).await.unwrap();
    let secret = store.create_session(bob, DAY, Some("192.0.2.1")).await.unwrap();
    assert_eq!(secret.len(), 64);
    assert_eq!(store.session_user(&secret).await.unwrap().unwrap().name, "bob");
    assert_eq!(store.session_user("not a session").await.unwrap(), None);
    let pool = pool(url).await;
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT id_hash FROM sessions").fetch_all(&pool).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], secret, "the session id is stored in the clear");

    store.revoke_session(&secret).await.unwrap();
    assert_eq!(store.session_user(&secret).await.unwrap(), None);

    let expired = store.create_session(bob, SignedDuration::from_secs(-1), None).await.unwrap();
    assert_eq!(store.session_user(&expired).await.unwrap(), None);

    // a new password ends the sessions started with the old one
    let live = store.create_session(bob, DAY, None).await.unwrap();
    store.set_password("bob", &hash_password("pw2").unwrap()).await.unwrap();
    assert_eq!(store.session_user(&live).await.unwrap(), None);
}
on_both_backends!(sessions_are_stored_hashed_expire_and_are_revoked);

async fn accounts_are_disabled_changed_and_their_sessions_listed_and_revoked(url: &str) {
    let store = Store::open(url).await.unwrap();
    let bob =
        store.add_user("bob", &hash_password("pw").unwrap(), Role::Deployer, None).await.unwrap();
    let first = store.create_session(bob, DAY, Some("192.0.2.1")).await.unwrap();
    let second = store.create_session(bob, DAY, None).await.unwrap();
    let secret = store
        .create_token(&store.user("bob").await.unwrap().unwrap(), "ci", Role::Viewer, None, DAY)
        .await
        .unwrap();

    let sessions = store.sessions("bob").await.unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s.address.as_deref() == Some("192.0.2.1")).count(), 1);
    assert!(sessions.iter().all(|s| s.revoked_at.is_none() && s.id.len() == 64));
    let first_id = carrier_storage::session_id(&first);
    store.revoke_session_of("bob", &first_id).await.unwrap();
    assert_eq!(store.session_user(&first).await.unwrap(), None);
    assert!(store.session_user(&second).await.unwrap().is_some());
    let err = store.revoke_session_of("alice", &first_id).await.unwrap_err();
    assert_eq!(err.to_string(), "user 'alice' has no active session with that id");

    // disabling ends the sessions (re-enabling does not bring them back) and stops tokens
    store.set_disabled("bob", true).await.unwrap();
    assert!(store.user("bob").await.unwrap().unwrap().disabled);
    assert_eq!(store.session_user(&second).await.unwrap(), None);
    assert_eq!(store.token_user(&secret).await.unwrap(), None);
    store.set_disabled("bob", false).await.unwrap();
    assert_eq!(store.session_user(&second).await.unwrap(), None);
    assert!(store.token_user(&secret).await.unwrap().is_some());
    assert!(
        matches!(store.set_disabled("eve", true).await, Err(StoreError::NoUser(n)) if n == "eve")
    );

    let scope = Scope::parse(&["tag:ci"]).unwrap();
    store.set_role("bob", Role::Viewer, Some(&scope)).await.unwrap();
    let bob_now = store.user("bob").await.unwrap().unwrap();
    assert_eq!((bob_now.role, bob_now.scope), (Role::Viewer, Some(scope)));
    assert!(matches!(store.set_role("eve", Role::Admin, None).await, Err(StoreError::NoUser(_))));

    let third = store.create_session(bob, DAY, None).await.unwrap();
    assert_eq!(store.revoke_sessions("bob").await.unwrap(), 1);
    assert_eq!(store.session_user(&third).await.unwrap(), None);
}
on_both_backends!(accounts_are_disabled_changed_and_their_sessions_listed_and_revoked);

async fn tokens_are_shown_once_limited_listed_and_revoked(url: &str) {
    let store = Store::open(url).await.unwrap();
    let scope = Scope::parse(&["tag:ci"]).unwrap();
    store
        .add_user("bob", &hash_password("pw").unwrap(), Role::Deployer, Some(&scope))
        .await
        .unwrap();
    let bob = store.user("bob").await.unwrap().unwrap();

    let err = store.create_token(&bob, "ci", Role::Admin, None, DAY).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "a token of 'bob' cannot have admin rights: the user is a deployer"
    );
    let secret = store.create_token(&bob, "ci", Role::Viewer, None, DAY).await.unwrap();
    let err = store.create_token(&bob, "ci", Role::Viewer, None, DAY).await.unwrap_err();
    assert_eq!(err.to_string(), "user 'bob' has a token named 'ci' already");

    let (owner, token) = store.token_user(&secret).await.unwrap().unwrap();
    assert_eq!(owner.name, "bob");
    assert_eq!(token.rights, Role::Viewer);
    assert_eq!(token.scope, Some(scope), "a token without a scope has its user's");
    assert!(token.last_used_at.is_some());
    let stored: Vec<String> = sqlx::query_scalar("SELECT hash FROM api_tokens")
        .fetch_all(&pool(url).await)
        .await
        .unwrap();
    assert_ne!(stored[0], secret, "the token is stored in the clear");

    let listed = store.tokens(Some("bob")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(store.tokens(None).await.unwrap(), listed);
    assert!(store.tokens(Some("alice")).await.unwrap().is_empty());

    store.revoke_token("bob", "ci").await.unwrap();
    assert_eq!(store.token_user(&secret).await.unwrap(), None);
    assert!(store.tokens(None).await.unwrap()[0].revoked_at.is_some());
    let err = store.revoke_token("bob", "ci").await.unwrap_err();
    assert_eq!(err.to_string(), "user 'bob' has no active token named 'ci'");

    let expired =
        store.create_token(&bob, "old", Role::Viewer, None, SignedDuration::from_secs(-1)).await;
    assert_eq!(store.token_user(&expired.unwrap()).await.unwrap(), None);
}
on_both_backends!(tokens_are_shown_once_limited_listed_and_revoked);

async fn the_audit_log_is_append_only_and_filtered(url: &str) {
    let store = Store::open(url).await.unwrap();
    let entry = |actor: &str, action: &str| NewAuditEntry {
        actor: actor.into(),
        address: Some("198.51.100.7".into()),
        action: action.into(),
        target: Some("node1".into()),
        details: json!({"role": "deployer"}),
        git: Some(GitState { revision: Some("abc123".into()), dirty: true }),
        outcome: "ok".into(),
    };
    store.audit(&entry("alice", "user.add")).await.unwrap();
    store.audit(&entry("bob", "token.create")).await.unwrap();
    store.audit(&NewAuditEntry { git: None, ..entry("alice", "token.create") }).await.unwrap();

    let all = store.audit_log(&AuditFilter { limit: 10, ..Default::default() }).await.unwrap();
    let seen: Vec<(&str, &str)> =
        all.iter().map(|e| (e.actor.as_str(), e.action.as_str())).collect();
    assert_eq!(seen, [("alice", "token.create"), ("bob", "token.create"), ("alice", "user.add")]);
    assert_eq!(all[0].git, None);
    assert_eq!(all[1].git, Some(GitState { revision: Some("abc123".into()), dirty: true }));
    assert_eq!(all[1].details, json!({"role": "deployer"}));
    assert_eq!(all[1].address.as_deref(), Some("198.51.100.7"));

    let by_alice = AuditFilter { actor: Some("alice".into()), limit: 10, ..Default::default() };
    assert_eq!(store.audit_log(&by_alice).await.unwrap().len(), 2);
    let creates =
        AuditFilter { action: Some("token.create".into()), limit: 1, ..Default::default() };
    assert_eq!(store.audit_log(&creates).await.unwrap()[0].actor, "alice");
    let since = AuditFilter { since: Some(all[2].at.clone()), limit: 10, ..Default::default() };
    assert_eq!(store.audit_log(&since).await.unwrap().len(), 3, "since is inclusive");
    let future =
        AuditFilter { since: Some("2999-01-01T00:00:00Z".into()), limit: 10, ..Default::default() };
    assert!(store.audit_log(&future).await.unwrap().is_empty());

    let pool = pool(url).await;
    for change in ["UPDATE audit_log SET outcome = 'forged'", "DELETE FROM audit_log"] {
        let err = sqlx::query(change).execute(&pool).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{change}: {err}");
    }
    assert_eq!(
        store.audit_log(&AuditFilter { limit: 10, ..Default::default() }).await.unwrap(),
        all
    );
}
on_both_backends!(the_audit_log_is_append_only_and_filtered);

async fn pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}
