//! skald's engine: blue/green deploys of Auto Scaling groups as an event-sourced workflow.
//!
//! - [`workflow`] is the pure core: `decide(&State, now)` and `evolve(State, &Recorded)`.
//! - [`ports`] are the traits the runner needs from the outside world.
//! - [`runner`] performs one step of a deploy: load, fold, decide, execute, append, wake.
//! - [`adapters`] implement the ports: in memory, a simulated cloud, DynamoDB and SQS.
//! - [`notify`] turns a deploy's transitions into notifications (and Slack messages).
//! - [`codec`] is the wire form of releases and events, and the hash chain.
//! - [`replay`] reads a stored history back: fold to any seq, phases, verification.
//! - [`upcast`] brings events written by older skalds up to today's schema.
//! - `testing` is test support: a local AWS API (moto) for the adapters' tests.
//!
//! The `aws` feature (on by default) adds the DynamoDB, SQS and cloud adapters and `testing`.

pub mod adapters;
pub mod codec;
pub mod message;
pub mod notify;
pub mod ports;
pub mod replay;
pub mod runner;
#[cfg(feature = "aws")]
pub mod testing;
pub mod upcast;
pub mod workflow;
