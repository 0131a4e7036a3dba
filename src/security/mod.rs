//! Security layers that live in the server: single-use stream tokens.

pub mod tokens;
