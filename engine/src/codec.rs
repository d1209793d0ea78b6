//! The wire forms: strict release parsing, the stored form of events, and the hash chain.
//!
//! A stored event is `{seq, at, type, v, body, state_hash, hash}`; the same object is one line of
//! an NDJSON export. `hash` is sha256 over the previous event's hash and this event's canonical
//! bytes, so changing, removing or reordering any event breaks every hash after it. `state_hash`
//! is sha256 over the folded state after the event, as the skald that recorded it computed it: a
//! replay with today's code must reach the same state at every seq.

use crate::upcast;
use crate::workflow::event::{current_version, Event, Recorded};
use crate::workflow::release::{STAMPED_KEYS, STAMPED_SERVICE_KEYS};
use crate::workflow::state::{check_shape, evolve, State};
use crate::workflow::validate::Problem;
use crate::workflow::{Release, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;

/// Release files larger than this are refused before parsing: a release is configuration, and
/// it is recorded whole in the deploy's first event (DynamoDB items stop at 400 KB).
pub const RELEASE_BYTES_MAX: usize = 64 * 1024;

/// Parses a release strictly: unknown keys, wrong types and missing fields are errors that name
/// the field's path (`services.web.autoscaling.min_size`).
pub fn parse_release(text: &str) -> Result<Release, Problem> {
    if text.len() > RELEASE_BYTES_MAX {
        return Err(Problem::new("release", format!("is {} bytes; at most {RELEASE_BYTES_MAX} are accepted", text.len())));
    }
    if let Some(problem) = stamped_key(text) {
        return Err(problem);
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { "release".to_string() } else { path };
        Problem::new(path, error.inner().to_string())
    })
}

/// The first key of an Odin release that Odin's client or deployer stamps on it (a release id,
/// a bucket, …): refused with its own message, as skald deploy sets its equivalents. Text that is
/// not a JSON object is left for the strict parse to explain.
fn stamped_key(text: &str) -> Option<Problem> {
    let Ok(Value::Object(release)) = serde_json::from_str::<Value>(text) else { return None };
    let message = |key: &str| format!("`{key}` is set by skald deploy (Odin's client stamps it), not written in a release");
    if let Some(key) = release.keys().find(|k| STAMPED_KEYS.contains(&k.as_str())) {
        return Some(Problem::new(key.as_str(), message(key)));
    }
    let services = release.get("services").and_then(Value::as_object)?;
    services.iter().find_map(|(name, service)| {
        let key = service.as_object()?.keys().find(|k| STAMPED_SERVICE_KEYS.contains(&k.as_str()))?;
        Some(Problem::new(format!("services.{name}.{key}"), message(key)))
    })
}

/// sha256 (hex) of the release's canonical JSON: keys sorted, no whitespace.
pub fn release_digest(release: &Release) -> String {
    sha256_hex(&canonical_bytes(&serde_json::to_value(release).expect("a release always serialises")))
}

/// An event as stored in DynamoDB and exported as NDJSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredEvent {
    pub seq: u64,
    pub at: Timestamp,
    #[serde(rename = "type")]
    pub kind: String,
    pub v: u32,
    pub body: Value,
    /// sha256 of the deploy's state after this event (see [`state_hash`]).
    pub state_hash: String,
    pub hash: String,
}

/// Why a stored event cannot be read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub seq: u64,
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {}: {}", self.seq, self.message)
    }
}

impl std::error::Error for DecodeError {}

/// Encodes `recorded` as the successor of the event whose hash is `previous_hash` ("" for seq 1);
/// `state_hash` is the [`state_hash`] of the state once `recorded` is folded in.
pub fn encode(recorded: &Recorded, previous_hash: &str, state_hash: String) -> StoredEvent {
    let tagged = serde_json::to_value(&recorded.event).expect("events always serialise");
    let body = tagged.get("body").cloned().unwrap_or(Value::Object(Default::default()));
    let mut stored = StoredEvent {
        seq: recorded.seq,
        at: recorded.at,
        kind: recorded.event.name().to_string(),
        v: recorded.event.version(),
        body,
        state_hash,
        hash: String::new(),
    };
    stored.hash = chain_hash(previous_hash, &stored);
    stored
}

/// Reads a stored event back, upcasting an older version of its type (see [`crate::upcast`]). An
/// unknown type or version is an error naming the seq, never a silent skip: a history skald cannot
/// read completely is a history it must not act on.
pub fn decode(stored: &StoredEvent) -> Result<Recorded, DecodeError> {
    let error = |message: String| DecodeError { seq: stored.seq, message };
    let kind = &stored.kind;
    let current = current_version(kind).ok_or_else(|| error(format!("unknown event type `{kind}` (written by a newer skald?)")))?;
    let body = upcast::to_current(kind, stored.v, stored.body.clone(), current, upcast::STEPS).map_err(error)?;
    let tagged = |body: Option<Value>| {
        let mut map = serde_json::Map::new();
        map.insert("type".into(), Value::String(kind.clone()));
        if let Some(body) = body {
            map.insert("body".into(), body);
        }
        Value::Object(map)
    };
    // Unit events are stored with an empty body and read without one; an empty body that is not
    // a unit event's (every field defaulted) is read as a body. One clone of the body, no more:
    // this runs once per event on every read.
    let event: Event = if body.as_object().is_some_and(|o| o.is_empty()) {
        serde_json::from_value(tagged(None)).or_else(|_| serde_json::from_value(tagged(Some(body))))
    } else {
        serde_json::from_value(tagged(Some(body)))
    }
    .map_err(|e| error(format!("{kind} body: {e}")))?;
    Ok(Recorded { seq: stored.seq, at: stored.at, event })
}

/// `s<SNAPSHOT_SCHEMA>:` and the sha256 (hex) of a state's canonical JSON. Recorded with every
/// event, so a replay can show that today's `evolve` reaches the state the recording skald
/// reached. A field added to `State` should be skipped while it holds its default, so old states
/// keep their hashes (the replay corpus fails when that is forgotten); a change to `State` that
/// cannot avoid changing them bumps `SNAPSHOT_SCHEMA`, and states recorded under an older schema
/// are then not compared (their events and decisions still are).
///
/// The state is hashed as `serde_json` writes it: fields in declaration order, maps (all
/// BTreeMaps) in key order. Reordering `State`'s fields therefore changes every hash too.
pub fn state_hash(state: &State) -> String {
    let mut hasher = HashWriter(Sha256::new());
    serde_json::to_writer(&mut hasher, state).expect("state always serialises");
    format!("{}{}", state_hash_prefix(), hex(&hasher.0.finalize()))
}

/// What every state hash this skald computes starts with.
pub fn state_hash_prefix() -> String {
    format!("s{SNAPSHOT_SCHEMA}:")
}

/// Reads a stored history whole: the chain verified, every event decoded, the shape checked, the
/// state folded. Any failure names the seq; nothing is skipped.
pub fn read_history(stored: &[StoredEvent]) -> Result<(Vec<Recorded>, State), String> {
    read_after(State::default(), "", stored)
}

/// Reads the events that follow `state` (whose last event's hash is `previous_hash`), as
/// [`read_history`] does from the start.
pub fn read_after(state: State, previous_hash: &str, stored: &[StoredEvent]) -> Result<(Vec<Recorded>, State), String> {
    verify_chain_from(previous_hash, stored).map_err(|e| e.to_string())?;
    let mut state = state;
    let mut recorded = Vec::with_capacity(stored.len());
    for event in stored {
        let event = decode(event).map_err(|e| e.to_string())?;
        check_shape(&state, &event).map_err(|e| e.to_string())?;
        state = evolve(state, &event);
        recorded.push(event);
    }
    Ok((recorded, state))
}

/// One history as NDJSON text (an export): a stored event per line, in the stored form.
pub fn to_ndjson(history: &[StoredEvent]) -> String {
    history.iter().map(|e| serde_json::to_string(e).expect("stored events serialise") + "\n").collect()
}

/// Below this many lines an export is parsed on the calling thread: threads would cost more.
const PARALLEL_PARSE_LINES_MIN: usize = 10_000;
/// Parsing is the slowest part of a replay; more threads than this gain little on its memory
/// bandwidth.
const PARSE_THREADS_MAX: usize = 8;

/// Parses an NDJSON export; an error names the line (and, for an unknown or missing key, the key).
/// Long exports are parsed in chunks on scoped threads (lines are independent); the result and
/// the first error reported are the same as a sequential parse's.
pub fn from_ndjson(text: &str) -> Result<Vec<StoredEvent>, String> {
    let lines: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(PARSE_THREADS_MAX);
    if lines.len() < PARALLEL_PARSE_LINES_MIN || threads == 1 {
        return parse_lines(&lines);
    }
    let chunk = lines.len().div_ceil(threads);
    let parsed: Vec<Result<Vec<StoredEvent>, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = lines.chunks(chunk).map(|part| scope.spawn(|| parse_lines(part))).collect();
        workers.into_iter().map(|w| w.join().expect("a parse thread does not panic")).collect()
    });
    let mut events = Vec::with_capacity(lines.len());
    for part in parsed {
        events.extend(part?);
    }
    Ok(events)
}

fn parse_lines(lines: &[(usize, &str)]) -> Result<Vec<StoredEvent>, String> {
    lines.iter().map(|(n, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))).collect()
}

/// The folded state of a deploy after `seq`, stored so that a step reads the snapshot and the few
/// events after it instead of the whole history. A cache, never a source of truth: a snapshot that
/// doesn't decode (an older skald wrote it) is ignored and the history is folded from the start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub seq: u64,
    /// The hash of event `seq`: the next event chains to it.
    pub hash: String,
    /// `SNAPSHOT_SCHEMA` of the skald that wrote it.
    pub schema: u32,
    pub state: Value,
}

/// Bumped whenever `State`'s shape changes, so old snapshots are ignored rather than misread.
pub const SNAPSHOT_SCHEMA: u32 = 1;

impl Snapshot {
    pub fn of(state: &State, hash: &str) -> Snapshot {
        let state_json = serde_json::to_value(state).expect("state always serialises");
        Snapshot { seq: state.seq, hash: hash.to_string(), schema: SNAPSHOT_SCHEMA, state: state_json }
    }

    /// The state, if this skald can read it.
    pub fn state(&self) -> Option<State> {
        let state: State = (self.schema == SNAPSHOT_SCHEMA).then(|| serde_json::from_value(self.state.clone()).ok()).flatten()?;
        (state.seq == self.seq).then_some(state)
    }
}

/// Where a hash chain breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainError {
    pub seq: u64,
    pub expected: String,
    pub found: String,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seq {}: hash {} does not match its content (expected {}): the event was altered, or one before it",
            self.seq, self.found, self.expected
        )
    }
}

impl std::error::Error for ChainError {}

/// Checks every link of the chain, from the first event.
pub fn verify_chain(history: &[StoredEvent]) -> Result<(), ChainError> {
    verify_chain_from("", history)
}

/// Checks the links of `events`, the first of which follows an event whose hash is `previous`.
pub fn verify_chain_from(previous: &str, events: &[StoredEvent]) -> Result<(), ChainError> {
    let mut previous = previous;
    for stored in events {
        let expected = chain_hash(previous, stored);
        if expected != stored.hash {
            return Err(ChainError { seq: stored.seq, expected, found: stored.hash.clone() });
        }
        previous = &stored.hash;
    }
    Ok(())
}

/// The hash that chains `stored` to the event whose hash is `previous_hash`: sha256 over the
/// previous hash, a newline, and the canonical JSON of `{at, body, seq, state_hash, type, v}`.
pub fn chain_hash(previous_hash: &str, stored: &StoredEvent) -> String {
    let mut hasher = HashWriter(Sha256::new());
    hasher.0.update(previous_hash.as_bytes());
    hasher.0.update(b"\n");
    // The canonical bytes of that object, written field by field (keys in sorted order, as
    // `canonical_bytes` would give) without building it: this runs once per event on every read.
    let write = |hasher: &mut HashWriter, key: &str, value: &dyn erased::Json| {
        hasher.0.update(key.as_bytes());
        value.write_to(hasher);
    };
    write(&mut hasher, "{\"at\":", &stored.at);
    write(&mut hasher, ",\"body\":", &stored.body);
    write(&mut hasher, ",\"seq\":", &stored.seq);
    write(&mut hasher, ",\"state_hash\":", &stored.state_hash);
    write(&mut hasher, ",\"type\":", &stored.kind);
    write(&mut hasher, ",\"v\":", &stored.v);
    hasher.0.update(b"}");
    hex(&hasher.0.finalize())
}

/// Feeds whatever is written to it into a sha256.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

mod erased {
    /// A value written as compact JSON into a hash.
    pub trait Json {
        fn write_to(&self, hasher: &mut super::HashWriter);
    }

    impl<T: serde::Serialize> Json for T {
        fn write_to(&self, hasher: &mut super::HashWriter) {
            serde_json::to_writer(hasher, self).expect("hashed values serialise");
        }
    }
}

/// JSON with object keys in sorted order and no whitespace: one byte string per value.
/// (`serde_json::Value` keeps objects in a BTreeMap unless `preserve_order` is enabled, and
/// `canonical_keys_are_sorted` below fails if a dependency ever turns that feature on.)
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON values always serialise")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_export_parses_in_order_and_names_its_first_bad_line() {
        // Given an export long enough to be parsed on several threads
        let lines = PARALLEL_PARSE_LINES_MIN * 2 + 7;
        let mut previous = String::new();
        let history: Vec<StoredEvent> = (1..=lines as u64)
            .map(|seq| {
                let stored = encode(&Recorded { seq, at: Timestamp(seq), event: Event::LockReleased }, &previous, "s1:x".into());
                previous = stored.hash.clone();
                stored
            })
            .collect();
        let text = to_ndjson(&history);
        // Then it reads back whole and in order
        assert_eq!(from_ndjson(&text).unwrap(), history);
        // And with two bad lines, the error names the first, as a sequential parse would
        let mut broken: Vec<&str> = text.lines().collect();
        broken[lines - 3] = "{not json";
        broken[lines / 3] = "{\"seq\": 1}";
        let error = from_ndjson(&broken.join("\n")).unwrap_err();
        assert!(error.starts_with(&format!("line {}:", lines / 3 + 1)), "{error}");
    }

    #[test]
    fn canonical_keys_are_sorted() {
        let value: Value = serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":3}}"#).unwrap();
        assert_eq!(canonical_bytes(&value), br#"{"a":{"c":3,"d":2},"b":1}"#);
    }

    #[test]
    fn the_chain_hashes_the_canonical_json_of_the_event() {
        let recorded = Recorded { seq: 4, at: Timestamp(1_000), event: Event::AsgDeleted { asg: "a\"b".into() } };
        let stored = encode(&recorded, "prev", "s1:x".into());
        let object =
            serde_json::json!({"seq": 4, "at": stored.at, "type": "AsgDeleted", "v": 1, "body": stored.body, "state_hash": "s1:x"});
        let expected = sha256_hex(&[b"prev\n".as_slice(), &canonical_bytes(&object)].concat());
        assert_eq!(stored.hash, expected);
    }

    #[test]
    fn encode_then_decode_gives_the_event_back() {
        let recorded = Recorded { seq: 2, at: Timestamp(1_000), event: Event::ServicesHealthy };
        let stored = encode(&recorded, "abc", "s2".into());
        assert_eq!(decode(&stored).unwrap(), recorded);
        let halt = Recorded { seq: 3, at: Timestamp(2_000), event: Event::HaltRequested { reason: "r".into(), requested_by: None } };
        assert_eq!(decode(&encode(&halt, &stored.hash, "s3".into())).unwrap(), halt);
    }

    #[test]
    fn unknown_types_and_versions_are_errors_naming_the_seq() {
        let mut stored = encode(&Recorded { seq: 7, at: Timestamp(0), event: Event::LockReleased }, "", String::new());
        stored.v = 9;
        assert_eq!(
            decode(&stored).unwrap_err().to_string(),
            "seq 7: LockReleased has schema version 9; this skald reads up to version 1 (a newer skald wrote it)"
        );
        stored.kind = "Teleported".into();
        assert_eq!(decode(&stored).unwrap_err().to_string(), "seq 7: unknown event type `Teleported` (written by a newer skald?)");
    }

    #[test]
    fn parse_errors_name_the_path() {
        let text = r#"{"project_name":"p","config_name":"c","ami":"a","services":{"web":{"instance_type":"t3.micro","autoscaling":{"min_size":"two"}}}}"#;
        let problem = parse_release(text).unwrap_err();
        assert_eq!(problem.path, "services.web.autoscaling.min_size");
    }
}
