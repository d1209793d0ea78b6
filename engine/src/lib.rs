//! skald's engine: blue/green deploys of Auto Scaling groups as an event-sourced workflow.
//!
//! - [`workflow`] is the pure core: `decide(&State, now)` and `evolve(State, &Recorded)`.
//! - [`ports`] are the traits the runner needs from the outside world.
//! - [`runner`] performs one step of a deploy: load, fold, decide, execute, append, wake.
//! - [`adapters`] implement the ports: in memory, and a simulated cloud.
//! - [`codec`] is the wire form of releases and events, and the hash chain.

pub mod adapters;
pub mod codec;
pub mod message;
pub mod ports;
pub mod runner;
pub mod workflow;
