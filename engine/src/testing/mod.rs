//! Test support, public so integration tests (and other crates' tests) can share it.
//! Nothing in here is used by skald at run time.
//!
//! - `moto`: a local AWS API (moto in server mode) for the adapters' tests, started once per test
//!   process, or taken from `SKALD_TEST_AWS_ENDPOINT`.

pub mod moto;
