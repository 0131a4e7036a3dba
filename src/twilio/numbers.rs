//! Phone-number configuration through the REST API (in progress).
