//! Security layers that live in the server: single-use stream tokens.

pub mod policy;
pub mod rate_limit;
pub mod tokens;
