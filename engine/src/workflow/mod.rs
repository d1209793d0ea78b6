//! The deploy workflow, pure: the release model, the events, `evolve` and `decide`.
//!
//! This module is the whole of skald's behaviour and nothing else. It depends on `serde` and `std`
//! only: no async runtime, no AWS types, no clock, no randomness, no I/O (a test in
//! `engine/tests/purity.rs` keeps it so). Time and ids come in as arguments. Everything that talks
//! to the outside world lives in `runner` and `adapters`.

pub mod audit;
pub mod capacity;
pub mod command;
pub mod decide;
pub mod event;
pub mod health;
pub mod listener_rule;
pub mod names;
pub mod outcome;
pub mod placement;
pub mod release;
pub mod resources;
pub mod safe_release;
pub mod settings;
pub mod state;
pub mod time;
pub mod validate;

pub use command::{CloudError, Command, LaunchSpec, Outcome};
pub use decide::{decide, Decision};
pub use event::{Cleanliness, ErrorKind, Event, Recorded};
pub use outcome::{record, Next, Recording};
pub use release::Release;
pub use state::{evolve, fold, End, FoldError, State};
pub use time::Timestamp;
