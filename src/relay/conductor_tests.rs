//! Unit tests of the conductor (in progress).
