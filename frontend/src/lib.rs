//! The hydrate entry: the dashboard is rendered on the server; in the browser only its
//! islands (the live job, the status refresh, the deploy form, the account's tokens and
//! sessions) come alive.

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    app::hydrate_islands();
}
