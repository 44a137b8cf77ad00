//! The Content-Security-Policy of the dashboard's responses. A page may run only
//! scripts from its own origin plus the inline scripts leptos writes with this
//! response's nonce (the hydration loader and the resources it serialises), compile
//! WebAssembly (`'wasm-unsafe-eval'`, never `'unsafe-eval'`), load its CSS, images and
//! fonts from its own origin, and fetch only from its own origin; it can never be framed.

use leptos::nonce::{provide_nonce, use_nonce};
use leptos::prelude::use_context;

/// The policy of every response that is not a page (server functions, static files,
/// refusals): nothing may run or load, nothing may frame it.
pub const RESOURCE_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The policy of a page whose inline scripts carry `nonce`. `live_reload` allows the
/// websocket `cargo leptos watch` reloads the page through (development only).
pub fn page_csp(nonce: &str, live_reload: bool) -> String {
    let connect = if live_reload { "'self' ws: wss:" } else { "'self'" };
    format!(
        "default-src 'none'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data:; font-src 'self'; connect-src {connect}; manifest-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    )
}

/// Called while the page shell renders: a fresh nonce for this response's inline
/// scripts, and the page policy naming it set on the response.
pub fn provide_page_csp() {
    provide_nonce();
    let Some(nonce) = use_nonce() else {
        tracing::error!(
            "leptos was built without its `nonce` feature: pages keep the resource policy"
        );
        return;
    };
    let Some(response) = use_context::<leptos_axum::ResponseOptions>() else { return };
    let csp = page_csp(&nonce, std::env::var_os("LEPTOS_WATCH").is_some());
    match http::HeaderValue::from_str(&csp) {
        Ok(value) => response.insert_header(http::header::CONTENT_SECURITY_POLICY, value),
        Err(e) => tracing::error!("page CSP is not a header value: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_policy_allows_the_nonce_and_wasm_only() {
        let csp = page_csp("abc", false);
        assert!(csp.contains("script-src 'self' 'nonce-abc' 'wasm-unsafe-eval';"), "{csp}");
        assert!(!csp.contains("'unsafe-inline'") && !csp.contains("'unsafe-eval'"), "{csp}");
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("connect-src 'self';"),
            "{csp}"
        );
        assert!(page_csp("abc", true).contains("connect-src 'self' ws: wss:;"));
    }
}
