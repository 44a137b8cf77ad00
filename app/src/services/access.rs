//! Who may do what. Reading the inventory is public by default (the read-only status
//! page); with a token configured, every caller must present it as
//! `Authorization: Bearer <token>` or the `carrier_token` cookie.

use http::HeaderMap;

use crate::error::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadInventory,
}

#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// When set, every request must carry this token.
    pub token: Option<String>,
}

impl AccessPolicy {
    pub fn check(&self, headers: &HeaderMap, permission: Permission) -> Result<(), AppError> {
        let Some(expected) = &self.token else {
            return match permission {
                Permission::ReadInventory => Ok(()),
            };
        };
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().strip_prefix("carrier_token="))
            .next();
        match bearer.or(cookie) {
            Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
            Some(_) => Err(AppError::Unauthorized("the token is not valid".into())),
            None => Err(AppError::Unauthorized("a token is required".into())),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{AUTHORIZATION, COOKIE};

    fn headers(pairs: &[(http::header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn public_read_without_token() {
        assert!(
            AccessPolicy::default().check(&HeaderMap::new(), Permission::ReadInventory).is_ok()
        );
    }

    #[test]
    fn token_required_when_configured() {
        let p = AccessPolicy { token: Some("s3cret".into()) };
        assert_eq!(
            p.check(&HeaderMap::new(), Permission::ReadInventory),
            Err(AppError::Unauthorized("a token is required".into()))
        );
        assert!(
            p.check(&headers(&[(AUTHORIZATION, "Bearer s3cret")]), Permission::ReadInventory)
                .is_ok()
        );
        assert!(
            p.check(&headers(&[(COOKIE, "a=b; carrier_token=s3cret")]), Permission::ReadInventory)
                .is_ok()
        );
        assert!(
            p.check(&headers(&[(AUTHORIZATION, "Bearer wrong")]), Permission::ReadInventory)
                .is_err()
        );
    }
}
