//! Who is asking and what they may do. The caller of a request is resolved once, from its
//! credentials: `Authorization: Bearer` (an API token, or the shared token of one-person
//! mode), the `carrier_session` cookie of a signed-in account, the shared token's
//! `carrier_token` cookie, or nobody (anonymous, who may read only with `--anonymous-read`).
//! Every decision goes through `carrier_core::auth::authorize`. Decisions: docs/accounts.md.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use carrier_core::auth::{Action, Decision, Role, Scope, authorize};
use carrier_core::cluster::{Cluster, Machine};
use carrier_storage::{NewAuditEntry, Store, User, hash_password, verify_password};
use http::HeaderMap;

use super::sign_in_limit::{RetryAfter, SignInLimiter};
use crate::error::AppError;

/// The session cookie: HttpOnly, SameSite=Lax, Secure behind a TLS proxy.
pub const SESSION_COOKIE: &str = "carrier_session";
/// The shared token's cookie (one-person mode).
const TOKEN_COOKIE: &str = "carrier_token";
/// Sessions last this long from sign-in, however busy (fixed, not sliding): a stolen
/// cookie is worth at most a working day.
const SESSION_HOURS: i64 = 12;

/// What a server function or page needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Machines, carriers, the inventory's provenance.
    ReadInventory,
    /// Start or cancel jobs (deployers; each job's machines are checked against the
    /// caller's scope as well).
    Deploy,
    /// One's own tokens and sessions: any signed-in account (not the shared token).
    OwnAccount,
    /// Accounts of others, their sessions, the audit log.
    Administer,
}

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Session,
    ApiToken,
    SharedToken,
    Anonymous,
}

/// The caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account; `None` for the shared token and anonymous callers.
    pub account: Option<String>,
    pub via: Via,
    /// The client's address (the proxy's `X-Forwarded-For` only with `--trust-proxy`).
    pub address: Option<IpAddr>,
    /// What the caller may do: an action is allowed only if every grant allows it (an API
    /// token's rights and scope within its account's). Empty: nothing.
    grants: Vec<(Role, Option<Scope>)>,
}

impl Caller {
    pub fn anonymous(may_read: bool, address: Option<IpAddr>) -> Caller {
        let grants = if may_read { vec![(Role::Viewer, None)] } else { vec![] };
        Caller { account: None, via: Via::Anonymous, address, grants }
    }

    /// The role the caller acts with: the lowest of its grants.
    pub fn role(&self) -> Option<Role> {
        self.grants.iter().map(|(role, _)| *role).min()
    }

    /// The name the audit log records.
    pub fn actor(&self) -> String {
        match (&self.account, self.via) {
            (Some(name), _) => name.clone(),
            (None, Via::SharedToken) => "shared-token".into(),
            (None, _) => "anonymous".into(),
        }
    }

    /// Whether the caller may do `permission` (which concerns no particular machine).
    pub fn require(&self, permission: Permission) -> Result<(), AppError> {
        let action = match permission {
            Permission::ReadInventory => Action::View,
            Permission::Deploy => Action::Deploy,
            Permission::Administer => Action::Administer,
            Permission::OwnAccount if self.account.is_some() => return self.signed_in(),
            Permission::OwnAccount => {
                return Err(match self.via {
                    Via::Anonymous => AppError::Unauthorized("sign in first".into()),
                    _ => AppError::Forbidden("this needs an account: sign in".into()),
                });
            }
        };
        self.check(action, &[], &Cluster { machines: vec![] })
    }

    /// Whether the caller may do `action` on `machines`, resolved from the request's
    /// selection in `cluster` (the scope is checked against them, here on the server).
    pub fn check(
        &self,
        action: Action,
        machines: &[&Machine],
        cluster: &Cluster,
    ) -> Result<(), AppError> {
        self.signed_in()?;
        for (role, scope) in &self.grants {
            if let Decision::Denied(why) =
                authorize(*role, scope.as_ref(), action, machines, cluster)
            {
                return Err(AppError::Forbidden(why));
            }
        }
        Ok(())
    }

    fn signed_in(&self) -> Result<(), AppError> {
        if self.grants.is_empty() {
            return Err(AppError::Unauthorized("sign in first".into()));
        }
        Ok(())
    }
}

/// Why a sign-in failed. Both wrong passwords and unknown names are `Wrong`: the page
/// must not tell which names exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInError {
    Wrong,
    Limited(RetryAfter),
    Internal,
}

/// How callers are recognised and signed in.
#[derive(Debug)]
pub struct AccessPolicy {
    pub store: Store,
    /// The shared token of one-person mode: whoever presents it acts as an admin.
    pub shared_token: Option<String>,
    /// `--anonymous-read`: callers without credentials may read the inventory.
    pub anonymous_read: bool,
    /// `--trust-proxy`: the client address from `X-Forwarded-For`, and `Secure` cookies
    /// when `X-Forwarded-Proto: https`.
    pub trust_proxy: bool,
    pub limiter: SignInLimiter,
}

impl AccessPolicy {
    pub fn new(store: Store, shared_token: Option<String>) -> Self {
        AccessPolicy {
            store,
            shared_token,
            anonymous_read: false,
            trust_proxy: false,
            limiter: SignInLimiter::default(),
        }
    }

    /// The caller of a request with these headers from `peer`. A bearer or token cookie
    /// that matches nothing is an error (a client that sent one expects it to count); a
    /// session cookie that matches nothing (expired, revoked, account disabled) is anonymous.
    pub async fn resolve(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Caller, AppError> {
        let address = self.client_address(headers, peer);
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(given) = bearer {
            if self.is_shared_token(given) {
                return Ok(shared(address));
            }
            let found = self.store.token_user(given).await.map_err(internal)?;
            let Some((user, token)) = found else {
                return Err(AppError::Unauthorized("the token is not valid".into()));
            };
            let grants = vec![(user.role, user.scope), (token.rights, token.scope)];
            return Ok(Caller { account: Some(user.name), via: Via::ApiToken, address, grants });
        }
        if let Some(secret) = cookie(headers, SESSION_COOKIE) {
            let user = self.store.session_user(secret).await.map_err(internal)?;
            if let Some(user) = user {
                return Ok(account(user, Via::Session, address));
            }
        }
        match cookie(headers, TOKEN_COOKIE) {
            Some(given) if self.is_shared_token(given) => Ok(shared(address)),
            Some(_) => Err(AppError::Unauthorized("the token is not valid".into())),
            None => Ok(Caller::anonymous(self.anonymous_read, address)),
        }
    }

    fn is_shared_token(&self, given: &str) -> bool {
        self.shared_token
            .as_ref()
            .is_some_and(|expected| constant_time_eq(given.as_bytes(), expected.as_bytes()))
    }

    /// The connection's peer, or with `--trust-proxy` the last address the proxy added to
    /// `X-Forwarded-For` (earlier ones are the client's to invent).
    pub fn client_address(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        if !self.trust_proxy {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .and_then(|a| a.trim().parse().ok());
        forwarded.or(peer)
    }

    /// Whether cookies get `Secure`: the page was served over HTTPS, which carrier itself
    /// never does; a trusted proxy says so with `X-Forwarded-Proto: https`.
    pub fn secure(&self, headers: &HeaderMap) -> bool {
        self.trust_proxy
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
    }

    /// Checks a name and password and starts a session; returns its secret (the cookie's
    /// value). Rate limited per account and per address; every attempt is audited.
    pub async fn sign_in(
        &self,
        name: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<String, SignInError> {
        let limited_by = address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let result = self.try_sign_in(name, password, address, limited_by).await;
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(Attempt::Wrong(why)) => format!("failed: {why}"),
            Err(Attempt::Limited(_)) => "refused: too many failed sign-ins".into(),
            Err(Attempt::Internal) => "failed: internal error".into(),
        };
        let entry = NewAuditEntry {
            actor: name.chars().take(64).collect(),
            address: address.map(|a| a.to_string()),
            action: "sign-in".into(),
            outcome,
            ..Default::default()
        };
        if let Err(e) = self.store.audit(&entry).await {
            // an unaudited sign-in does not count
            tracing::error!("{e}");
            return Err(SignInError::Internal);
        }
        result.map_err(|e| match e {
            Attempt::Wrong(_) => SignInError::Wrong,
            Attempt::Limited(retry) => SignInError::Limited(retry),
            Attempt::Internal => SignInError::Internal,
        })
    }

    async fn try_sign_in(
        &self,
        name: &str,
        password: &str,
        address: Option<IpAddr>,
        limited_by: IpAddr,
    ) -> Result<String, Attempt> {
        self.limiter.check(name, limited_by, Instant::now()).map_err(Attempt::Limited)?;
        let found = self.store.credentials(name).await.map_err(|e| {
            tracing::error!("{e}");
            Attempt::Internal
        })?;
        // an unknown name costs a hash too, so timing does not tell which names exist
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), hash),
            None => (None, unknown_user_hash().to_string()),
        };
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
            .await
            .map_err(|e| {
                tracing::error!("password check failed: {e}");
                Attempt::Internal
            })?;
        let why = match &user {
            None => Some("no such account"),
            Some(_) if !matches => Some("wrong password"),
            Some(u) if u.disabled => Some("account disabled"),
            Some(_) => None,
        };
        if let Some(why) = why {
            self.limiter.failed(name, limited_by, Instant::now());
            return Err(Attempt::Wrong(why));
        }
        let user = user.expect("checked above");
        self.limiter.succeeded(name);
        let ttl = jiff::SignedDuration::from_hours(SESSION_HOURS);
        let address = address.map(|a| a.to_string());
        self.store.create_session(user.id, ttl, address.as_deref()).await.map_err(|e| {
            tracing::error!("{e}");
            Attempt::Internal
        })
    }

    /// Ends the session of `secret` (sign-out) and audits it.
    pub async fn sign_out(&self, secret: &str, caller: &Caller) -> Result<(), AppError> {
        self.store.revoke_session(secret).await.map_err(internal)?;
        self.audit(caller, "sign-out", None, serde_json::json!({}), "ok").await
    }

    /// Appends an audit entry for something `caller` did.
    pub async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        target: Option<&str>,
        details: serde_json::Value,
        outcome: &str,
    ) -> Result<(), AppError> {
        let entry = NewAuditEntry {
            actor: caller.actor(),
            address: caller.address.map(|a| a.to_string()),
            action: action.into(),
            target: target.map(Into::into),
            details,
            git: None,
            outcome: outcome.into(),
        };
        self.store.audit(&entry).await.map_err(internal)
    }
}

enum Attempt {
    Wrong(&'static str),
    Limited(RetryAfter),
    Internal,
}

/// A hash no password is checked against for real; made once.
fn unknown_user_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("no account has this password").unwrap_or_default())
}

fn shared(address: Option<IpAddr>) -> Caller {
    Caller { account: None, via: Via::SharedToken, address, grants: vec![(Role::Admin, None)] }
}

fn account(user: User, via: Via, address: Option<IpAddr>) -> Caller {
    Caller { account: Some(user.name), via, address, grants: vec![(user.role, user.scope)] }
}

pub(super) fn internal(e: carrier_storage::StoreError) -> AppError {
    tracing::error!("{e}");
    AppError::Internal
}

/// The value of the cookie `name`, if the request carries it.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` value of a session (`None`: the cookie cleared).
pub fn session_cookie(secret: Option<&str>, secure: bool) -> String {
    let (value, max_age) = match secret {
        Some(s) => (s, SESSION_HOURS * 3600),
        None => ("", 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{AUTHORIZATION, COOKIE};

    const PEER: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    /// A policy over a fresh SQLite store with viewer `vic`, deployer `dee` (scope
    /// `tag:ci`) and admin `ada`, all with the password `correct horse`.
    async fn policy(shared_token: Option<&str>) -> (tempfile::TempDir, AccessPolicy) {
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", tmp.path().join("carrier.sqlite").display());
        let store = Store::open(&url).await.unwrap();
        let hash = hash_password("correct horse").unwrap();
        let ci = Scope::parse(&["tag:ci"]).unwrap();
        store.add_user("vic", &hash, Role::Viewer, None).await.unwrap();
        store.add_user("dee", &hash, Role::Deployer, Some(&ci)).await.unwrap();
        store.add_user("ada", &hash, Role::Admin, None).await.unwrap();
        (tmp, AccessPolicy::new(store, shared_token.map(Into::into)))
    }

    async fn session_of(p: &AccessPolicy, name: &str) -> String {
        p.sign_in(name, "correct horse", PEER).await.unwrap()
    }

    #[tokio::test]
    async fn a_session_cookie_is_its_account() {
        let (_tmp, p) = policy(None).await;
        let secret = session_of(&p, "dee").await;
        let cookie = format!("other=1; {SESSION_COOKIE}={secret}");
        let caller = p.resolve(&headers(&[("cookie", &cookie)]), PEER).await.unwrap();
        assert_eq!((caller.account.as_deref(), caller.via), (Some("dee"), Via::Session));
        assert_eq!(caller.role(), Some(Role::Deployer));
        assert_eq!(caller.require(Permission::ReadInventory), Ok(()));
        assert_eq!(caller.require(Permission::OwnAccount), Ok(()));
        assert_eq!(
            caller.require(Permission::Administer),
            Err(AppError::Forbidden("this needs the admin role; the account is a deployer".into()))
        );
    }

    #[tokio::test]
    async fn revoked_expired_and_disabled_sessions_are_anonymous_at_once() {
        let (_tmp, p) = policy(None).await;
        let read = |secret: &str| headers(&[("cookie", &format!("{SESSION_COOKIE}={secret}"))]);
        let revoked = session_of(&p, "vic").await;
        p.store.revoke_session(&revoked).await.unwrap();
        let user = p.store.user("vic").await.unwrap().unwrap();
        let expired =
            p.store.create_session(user.id, jiff::SignedDuration::from_secs(-1), None).await;
        let disabled = session_of(&p, "ada").await;
        p.store.set_disabled("ada", true).await.unwrap();
        for secret in [revoked, expired.unwrap(), disabled, "forged".into()] {
            let caller = p.resolve(&read(&secret), PEER).await.unwrap();
            assert_eq!((caller.via, caller.role()), (Via::Anonymous, None), "{secret}");
            assert_eq!(
                caller.require(Permission::ReadInventory),
                Err(AppError::Unauthorized("sign in first".into()))
            );
        }
        // a disabled account cannot sign in either, with the same answer as a wrong password
        assert_eq!(p.sign_in("ada", "correct horse", PEER).await, Err(SignInError::Wrong));
    }

    #[tokio::test]
    async fn a_bearer_token_acts_with_the_rights_of_both_token_and_account() {
        let (_tmp, p) = policy(None).await;
        let ada = p.store.user("ada").await.unwrap().unwrap();
        let ci = Scope::parse(&["tag:ci"]).unwrap();
        let secret = p
            .store
            .create_token(
                &ada,
                "ci",
                Role::Deployer,
                Some(&ci),
                jiff::SignedDuration::from_hours(1),
            )
            .await
            .unwrap();
        let bearer = format!("Bearer {secret}");
        let caller = p.resolve(&headers(&[("authorization", &bearer)]), PEER).await.unwrap();
        assert_eq!((caller.account.as_deref(), caller.via), (Some("ada"), Via::ApiToken));
        assert_eq!(caller.role(), Some(Role::Deployer), "the token's rights, not the admin's");
        assert!(caller.require(Permission::Administer).is_err());
        // the token's scope limits deploys although its account is an unscoped admin
        let tmp = tempfile::tempdir().unwrap();
        let conf = carrier_core::conf_dir::ConfDir::resolve(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/cluster"
        )))
        .unwrap();
        let inventory = carrier_core::cluster::Inventory::new(tmp.path().join("cache"));
        let cluster = inventory.load_outcome(&conf).unwrap().cluster.unwrap();
        let machines = vec![cluster.get("pxe-server").unwrap()];
        assert_eq!(
            caller.check(Action::Deploy, &machines, &cluster),
            Err(AppError::Forbidden("outside the account's scope (tag:ci): pxe-server".into()))
        );
        // the account's limits hold too: a disabled account's token matches nothing
        p.store.set_disabled("ada", true).await.unwrap();
        assert_eq!(
            p.resolve(&headers(&[("authorization", &bearer)]), PEER).await.unwrap_err(),
            AppError::Unauthorized("the token is not valid".into())
        );
    }

    #[tokio::test]
    async fn the_shared_token_and_anonymous_callers() {
        let (_tmp, p) = policy(Some("s3cret")).await;
        for h in [
            headers(&[(AUTHORIZATION.as_str(), "Bearer s3cret")]),
            headers(&[(COOKIE.as_str(), "a=b; carrier_token=s3cret")]),
        ] {
            let caller = p.resolve(&h, PEER).await.unwrap();
            assert_eq!((caller.via, caller.role()), (Via::SharedToken, Some(Role::Admin)));
            assert_eq!(caller.actor(), "shared-token");
            // no account of its own to hold tokens or sessions
            assert!(matches!(caller.require(Permission::OwnAccount), Err(AppError::Forbidden(_))));
        }
        for wrong in [
            headers(&[(AUTHORIZATION.as_str(), "Bearer wrong")]),
            headers(&[(COOKIE.as_str(), "carrier_token=wrong")]),
        ] {
            assert!(matches!(p.resolve(&wrong, PEER).await, Err(AppError::Unauthorized(_))));
        }
        let nobody = p.resolve(&HeaderMap::new(), PEER).await.unwrap();
        assert_eq!((nobody.via, nobody.role()), (Via::Anonymous, None));
        let (_tmp2, other) = policy(None).await;
        let open = AccessPolicy { anonymous_read: true, ..other };
        let reader = open.resolve(&HeaderMap::new(), PEER).await.unwrap();
        assert_eq!(reader.require(Permission::ReadInventory), Ok(()));
        assert_eq!(
            reader.require(Permission::OwnAccount),
            Err(AppError::Unauthorized("sign in first".into()))
        );
        assert!(reader.require(Permission::Administer).is_err());
    }

    #[tokio::test]
    async fn sign_ins_are_limited_audited_and_alike_for_unknown_names() {
        let (_tmp, p) = policy(None).await;
        assert_eq!(p.sign_in("nobody", "correct horse", PEER).await, Err(SignInError::Wrong));
        for _ in 1..super::super::sign_in_limit::PER_ACCOUNT {
            assert_eq!(p.sign_in("vic", "wrong", PEER).await, Err(SignInError::Wrong));
        }
        assert_eq!(p.sign_in("vic", "wrong", PEER).await, Err(SignInError::Wrong));
        // the right password no longer helps: the account is limited
        assert!(matches!(
            p.sign_in("vic", "correct horse", PEER).await,
            Err(SignInError::Limited(_))
        ));
        let log = p
            .store
            .audit_log(&carrier_storage::AuditFilter { limit: 100, ..Default::default() })
            .await
            .unwrap();
        let outcomes: Vec<(&str, &str)> =
            log.iter().map(|e| (e.actor.as_str(), e.outcome.as_str())).collect();
        assert_eq!(outcomes[0], ("vic", "refused: too many failed sign-ins"));
        assert_eq!(outcomes[1], ("vic", "failed: wrong password"));
        assert_eq!(*outcomes.last().unwrap(), ("nobody", "failed: no such account"));
        assert!(
            log.iter().all(|e| e.action == "sign-in" && e.address.as_deref() == Some("192.0.2.1"))
        );
    }

    #[test]
    fn the_client_address_and_secure_cookies_come_from_a_proxy_only_when_trusted() {
        let (tmp, rt) = (tempfile::tempdir().unwrap(), tokio::runtime::Runtime::new().unwrap());
        let url = format!("sqlite://{}", tmp.path().join("c.sqlite").display());
        let store = rt.block_on(Store::open(&url)).unwrap();
        let mut p = AccessPolicy::new(store, None);
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9, 198.51.100.3"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(p.client_address(&h, PEER), PEER);
        assert!(!p.secure(&h));
        p.trust_proxy = true;
        assert_eq!(p.client_address(&h, PEER), Some("198.51.100.3".parse().unwrap()));
        assert!(p.secure(&h));
        assert_eq!(
            session_cookie(Some("abc"), true),
            "carrier_session=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=43200; Secure"
        );
        assert!(session_cookie(None, false).ends_with("Max-Age=0"));
    }
}
