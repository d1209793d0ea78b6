//! Recorded histories and the tests that replay them.
//!
//! A history travels as NDJSON: one stored event (`{seq, at, type, v, body, state_hash, hash}`)
//! per line, the same form the event store holds. `corpus/` holds histories frozen from real runs;
//! `tests/` replays every one of them with today's code. `sim` drives many deploys through the real
//! runner with faults from one seed.

pub mod corpus;
pub mod sim;

pub use skald_engine::codec::{from_ndjson, to_ndjson};
