//! Shared helpers of server's integration tests (`mod support;` in a test file).

pub(crate) mod netlab;
