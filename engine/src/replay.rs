//! Replaying a stored history, as auditors and on-call engineers do: read it, fold it to any seq,
//! split it into phases, and verify it against today's code.
//!
//! Replay never touches the network or a clock: its only input is the stored events, whether they
//! come from DynamoDB or from an NDJSON export. Verification checks, in order:
//! 1. the sequence is 1, 2, 3, … with no gap or repeat;
//! 2. the hash chain is intact (no event altered, removed or reordered since it was recorded);
//! 3. every event decodes (an unknown type or version is an error, never skipped) and folds;
//! 4. the state after every event hashes to the `state_hash` the recording skald stored (when it
//!    was recorded under today's `State` schema);
//! 5. every decision in the history is the one today's `decide` makes (`workflow::audit`).
//!
//! The first failure is reported with its seq and both sides; later ones are not looked for,
//! because everything after a broken link is suspect anyway.

use crate::codec::{self, ChainError, DecodeError, StoredEvent};
use crate::workflow::audit::{self, Divergence};
use crate::workflow::state::check_shape;
use crate::workflow::{evolve, End, FoldError, Recorded, State, Timestamp};
use serde::Serialize;
use std::fmt;

/// Why a history does not verify.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The history holds no events at all.
    Empty,
    /// The events are not numbered 1, 2, 3, …: one was removed, repeated or moved.
    Sequence {
        position: usize,
        expected: u64,
        found: u64,
    },
    Chain(ChainError),
    Decode(DecodeError),
    Fold(FoldError),
    /// Today's `evolve` reaches a different state than the recording skald did.
    StateHash {
        seq: u64,
        recorded: String,
        replayed: String,
    },
    Decision(Box<Divergence>),
}

impl Failure {
    /// The seq the failure points at, when it points at one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Failure::Empty => None,
            Failure::Sequence { found, .. } => Some(*found),
            Failure::Chain(e) => Some(e.seq),
            Failure::Decode(e) => Some(e.seq),
            Failure::Fold(e) => Some(fold_error_seq(e)),
            Failure::StateHash { seq, .. } => Some(*seq),
            Failure::Decision(d) => Some(d.seq),
        }
    }

    /// Which check failed, in a word: `sequence`, `chain`, `decode`, `fold`, `state`, `decision`.
    pub fn check(&self) -> &'static str {
        match self {
            Failure::Empty | Failure::Sequence { .. } => "sequence",
            Failure::Chain(_) => "chain",
            Failure::Decode(_) => "decode",
            Failure::Fold(_) => "fold",
            Failure::StateHash { .. } => "state",
            Failure::Decision(_) => "decision",
        }
    }
}

fn fold_error_seq(error: &FoldError) -> u64 {
    match error {
        FoldError::Gap { found, .. } => *found,
        FoldError::NotFirst { seq, .. }
        | FoldError::MissingRequest { seq }
        | FoldError::AfterEnd { seq, .. }
        | FoldError::Content { seq, .. } => *seq,
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Empty => write!(f, "the history has no events"),
            Failure::Sequence { position, expected, found } => {
                write!(f, "seq {found}: event {position} of the history should be seq {expected} (an event is missing, repeated or moved)")
            }
            Failure::Chain(e) => e.fmt(f),
            Failure::Decode(e) => e.fmt(f),
            Failure::Fold(e) => e.fmt(f),
            Failure::StateHash { seq, recorded, replayed } => write!(
                f,
                "seq {seq}: the state after this event hashes to {replayed} today, but {recorded} when it was recorded (evolve changed)"
            ),
            Failure::Decision(d) => d.fmt(f),
        }
    }
}

impl std::error::Error for Failure {}

/// What a history that verified holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verified {
    pub events: usize,
    /// Events whose recorded state was compared: all of them, unless some were recorded under an
    /// older `State` schema.
    pub states_compared: usize,
    /// The hash of the last event: anyone holding it can check a later export has not been cut.
    pub last_hash: String,
    pub end: Option<&'static str>,
}

/// Reads a history without judging it: decodes and folds, stopping at the first event that cannot
/// be read or applied. The hash chain is not checked here (see [`verify`]).
pub fn read(stored: &[StoredEvent]) -> Result<(Vec<Recorded>, State), Failure> {
    fold_stored(stored, |_, _| Ok(()))
}

/// Decodes and folds `stored`, calling `check` with each stored event and the state after it.
fn fold_stored(
    stored: &[StoredEvent],
    mut check: impl FnMut(&StoredEvent, &State) -> Result<(), Failure>,
) -> Result<(Vec<Recorded>, State), Failure> {
    let mut state = State::default();
    let mut recorded = Vec::with_capacity(stored.len());
    for event in stored {
        let decoded = codec::decode(event).map_err(Failure::Decode)?;
        check_shape(&state, &decoded).map_err(Failure::Fold)?;
        state = evolve(state, &decoded);
        check(event, &state)?;
        recorded.push(decoded);
    }
    Ok((recorded, state))
}

/// The state after event `seq` (0: before the first).
pub fn state_at(stored: &[StoredEvent], seq: u64) -> Result<State, Failure> {
    let upto = stored.iter().take_while(|e| e.seq <= seq).count();
    read(&stored[..upto]).map(|(_, state)| state)
}

/// Runs every check on a whole history; see the module's documentation.
pub fn verify(stored: &[StoredEvent]) -> Result<Verified, Failure> {
    if stored.is_empty() {
        return Err(Failure::Empty);
    }
    for (position, event) in stored.iter().enumerate() {
        let expected = position as u64 + 1;
        if event.seq != expected {
            return Err(Failure::Sequence { position: position + 1, expected, found: event.seq });
        }
    }
    codec::verify_chain(stored).map_err(Failure::Chain)?;
    let mut states_compared = 0;
    let comparable = codec::state_hash_prefix();
    let (recorded, state) = fold_stored(stored, |event, state| {
        // A state recorded under another State schema cannot hash alike; see `codec::state_hash`.
        if event.state_hash.starts_with(&comparable) {
            let replayed = codec::state_hash(state);
            if replayed != event.state_hash {
                return Err(Failure::StateHash { seq: event.seq, recorded: event.state_hash.clone(), replayed });
            }
            states_compared += 1;
        }
        Ok(())
    })?;
    audit::check(&recorded).map_err(|d| Failure::Decision(Box::new(d)))?;
    let last_hash = stored.last().map(|e| e.hash.clone()).unwrap_or_default();
    Ok(Verified { events: stored.len(), states_compared, last_hash, end: state.end.as_ref().map(End::name) })
}

/// A stretch of the deploy in one phase (`State::phase`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Phase {
    pub name: &'static str,
    /// The event that entered the phase.
    pub from_seq: u64,
    pub from: Timestamp,
    /// When the next phase began; for the last phase, the last event's instant.
    pub until: Timestamp,
}

impl Phase {
    pub fn elapsed_ms(&self) -> u64 {
        self.until.ms_since(self.from)
    }
}

/// The phases a folded history went through, in order. Ends (Success, FailureClean,
/// FailureDirty) are phases of no length.
pub fn phases(history: &[Recorded]) -> Vec<Phase> {
    let mut phases: Vec<Phase> = Vec::new();
    let mut state = State::default();
    for recorded in history {
        state = evolve(state, recorded);
        let name = state.phase();
        if phases.last().is_some_and(|p| p.name == name) {
            continue;
        }
        if let Some(previous) = phases.last_mut() {
            previous.until = recorded.at;
        }
        phases.push(Phase { name, from_seq: recorded.seq, from: recorded.at, until: recorded.at });
    }
    if let (Some(last), Some(final_event)) = (phases.last_mut(), history.last()) {
        last.until = final_event.at;
    }
    phases
}
