//! The DynamoDB event store against a local AWS API (moto, started by the test support unless
//! `SKALD_TEST_AWS_ENDPOINT` names one). Each test uses its own table.

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use serde_json::json;
use skald_engine::adapters::dynamodb::{create_table, event_item, event_pk, freeze_pk, DynamoStore};
use skald_engine::adapters::local::{example_release, provision_example, VISIBILITY_SECS};
use skald_engine::adapters::memory::{MemoryQueue, MemoryStore, VirtualClock};
use skald_engine::adapters::sim::{SimCloud, Timings};
use skald_engine::codec::{self, StoredEvent};
use skald_engine::message::Message;
use skald_engine::ports::{Append, AppendError, Clock, EventStore, IndexEntry, LockKey, LockOp};
use skald_engine::runner::{RunError, Runner, RunnerConfig};
use skald_engine::testing::moto;
use skald_engine::workflow::event::{Cleanliness, ErrorKind, Freeze};
use skald_engine::workflow::{fold, End, Event, Recorded, Timestamp};
use std::sync::Arc;

/// 2026-11-21T12:00:00Z.
const T0: Timestamp = Timestamp(1_795_262_400_000);

async fn new_store(label: &str) -> DynamoStore {
    let config = moto::aws_config().await;
    let store = DynamoStore::from_sdk_config(&config, moto::unique_name(label));
    create_table(&store.client, &store.table).await.expect("the table is created");
    store
}

fn key() -> LockKey {
    LockKey { project: "coinbase/deploy-test".into(), config: "production".into() }
}

/// Encodes `events` as the successors of `after` (the deploy's last stored event, if any).
fn chain(after: Option<&StoredEvent>, events: Vec<(Timestamp, Event)>) -> Vec<StoredEvent> {
    let mut seq = after.map_or(0, |e| e.seq);
    let mut previous = after.map_or(String::new(), |e| e.hash.clone());
    events
        .into_iter()
        .map(|(at, event)| {
            seq += 1;
            // The store keeps state hashes as given; these events need not fold.
            let stored = codec::encode(&Recorded { seq, at, event }, &previous, format!("state {seq}"));
            previous = stored.hash.clone();
            stored
        })
        .collect()
}

fn halt(reason: &str) -> Event {
    Event::HaltRequested { reason: reason.into(), requested_by: None }
}

fn append(deploy: &str, events: Vec<StoredEvent>) -> Append {
    Append { deploy: deploy.into(), events, lock: None, index: None, snapshot: None }
}

fn acquire(owner: &str, now: Timestamp) -> Option<LockOp> {
    Some(LockOp::Acquire { key: key(), owner: owner.into(), lease_until: now.plus_secs(600), now })
}

fn release(owner: &str) -> Option<LockOp> {
    Some(LockOp::Release { key: key(), owner: owner.into() })
}

fn lock_event(at: Timestamp) -> Event {
    Event::LockAcquired { project: key().project, config: key().config, lease_until: at.plus_secs(600) }
}

/// A release whose JSON holds what DynamoDB's number and map handling could change: integral and
/// fractional floats, an empty map (`autoscaling: {}`), empty lists, an empty string, non-ASCII.
const AWKWARD_RELEASE: &str = r#"{
  "project_name": "coinbase/deploy-test", "config_name": "production",
  "subnets": [], "ami": "ubuntu ✓ ünïcødé", "user_data": "",
  "services": {
    "web": {
      "instance_type": "t3.micro", "security_groups": [], "tags": {"Team": "døploy", "Empty": ""},
      "autoscaling": { "min_size": 2, "max_size": 4, "spread": 1.0,
        "policies": [{"type": "cpu_scale_up", "threshold": 70.0}, {"type": "cpu_scale_down", "threshold": 12.5}] }
    },
    "worker": { "instance_type": "t3.small", "autoscaling": {} }
  }
}"#;

/// Pins: a stored event reads back identical (every field, every number's kind), so its hash
/// verifies after a trip through DynamoDB.
#[tokio::test]
async fn deploy_requested_round_trips_exactly() {
    // Given a DeployRequested whose release has floats, empty maps and lists, and odd strings
    let store = new_store("roundtrip").await;
    let release = codec::parse_release(AWKWARD_RELEASE).expect("the release parses");
    let digest = codec::release_digest(&release);
    let requested = Event::DeployRequested {
        release_id: "01JD0000000000000000000001".into(),
        created_at: T0,
        release: Box::new(release),
        release_digest: digest,
        requested_by: Some("AIDAEXAMPLE".into()),
        freshness: Default::default(),
        settings: None,
        rules: skald_engine::workflow::event::RULES_CURRENT,
        frozen: None,
    };
    let events = chain(None, vec![(T0, requested), (T0.plus_ms(1), Event::ReleaseValidated)]);
    assert!(codec::canonical_bytes(&events[0].body).windows(4).any(|w| w == b"70.0"), "the body keeps 70.0 as a float");

    // When it is appended and loaded back
    store.append(append("d1", events.clone())).await.expect("appended");
    let loaded = store.load("d1").await.expect("loaded");

    // Then the events are identical, the chain verifies and they decode to the same events
    assert_eq!(loaded, events);
    codec::verify_chain(&loaded).expect("the chain verifies after the round trip");
    for (stored, original) in loaded.iter().zip(&events) {
        assert_eq!(codec::decode(stored).unwrap(), codec::decode(original).unwrap());
    }
}

/// Pins: arbitrary JSON bodies round-trip byte for byte (canonical bytes equal, so hashes do).
#[tokio::test]
async fn arbitrary_bodies_round_trip_byte_for_byte() {
    // Given an event whose body holds every JSON shape, numbers at the edges included
    let store = new_store("bodies").await;
    let body = json!({
        "one": 1.0, "sum": 0.30000000000000004, "tiny": -2.5e-10, "big": 1e20, "plain": 12345678.9,
        "max": u64::MAX, "min": i64::MIN, "zero": 0, "negative": -7,
        "nested": {"a": {"b": {"c": [1, 2.0, "3", {"d": []}]}}, "empty": {}},
        "list": [], "mixed": [null, true, false, "", "1.0", 1.5],
        "text": "ünïcødé ✓ \"quoted\" \n newline", "key/with~odd": {"x": 3.0},
    });
    let event = StoredEvent { seq: 1, at: T0, kind: "Anything".into(), v: 3, body, state_hash: "s".into(), hash: "not-a-chain".into() };

    // When it is appended and loaded back
    store.append(append("d1", vec![event.clone()])).await.expect("appended");
    let loaded = store.load("d1").await.expect("loaded");

    // Then it is the same event, down to its canonical bytes
    assert_eq!(loaded, vec![event.clone()]);
    assert_eq!(codec::canonical_bytes(&loaded[0].body), codec::canonical_bytes(&event.body));
}

/// Pins: two workers racing to append the same seq: exactly one wins, the other is told
/// `Conflict { seq }` and nothing of its append lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_of_one_seq_exactly_one_wins() {
    // Given a deploy with one event
    let store = new_store("race").await;
    let first = chain(None, vec![(T0, halt("first"))]);
    store.append(append("d1", first.clone())).await.expect("appended");
    let mut last = first[0].clone();
    for round in 0..5u64 {
        // When two workers append different events with the next seq at the same time
        let at = T0.plus_secs(round + 1);
        let a = chain(Some(&last), vec![(at, halt("worker a"))]);
        let b = chain(Some(&last), vec![(at.plus_ms(1), halt("worker b"))]);
        let (result_a, result_b) = tokio::join!(store.append(append("d1", a.clone())), store.append(append("d1", b.clone())));

        // Then exactly one wins and the other gets a Conflict on that seq
        let seq = last.seq + 1;
        let winner = match (result_a, result_b) {
            (Ok(()), Err(AppendError::Conflict { seq: lost })) if lost == seq => a,
            (Err(AppendError::Conflict { seq: lost }), Ok(())) if lost == seq => b,
            other => panic!("round {round}: expected one win and one conflict on seq {seq}, got {other:?}"),
        };
        let loaded = store.load("d1").await.unwrap();
        assert_eq!(loaded.last(), winner.last(), "round {round}: the winner's event is stored");
        codec::verify_chain(&loaded).unwrap();
        last = winner[0].clone();
    }
}

/// Pins: an append whose first seq is taken is a Conflict naming that seq, as in memory, even
/// when later seqs of the same append are free.
#[tokio::test]
async fn a_stale_append_is_a_conflict_naming_the_first_taken_seq() {
    let store = new_store("stale").await;
    let memory = MemoryStore::new();
    // Given two events stored
    let stored = chain(None, vec![(T0, halt("1")), (T0, halt("2"))]);
    store.append(append("d1", stored.clone())).await.unwrap();
    memory.append(append("d1", stored.clone())).await.unwrap();
    // When a worker that saw only seq 1 appends seqs 2 and 3
    let stale = chain(Some(&stored[0]), vec![(T0, halt("late 2")), (T0, halt("late 3"))]);
    // Then both stores refuse with Conflict on seq 2, and nothing of it lands
    assert_eq!(store.append(append("d1", stale.clone())).await, Err(AppendError::Conflict { seq: 2 }));
    assert_eq!(memory.append(append("d1", stale)).await, Err(AppendError::Conflict { seq: 2 }));
    assert_eq!(store.load("d1").await.unwrap(), stored);
}

/// Pins: the lock is taken and given back in the same transaction as the events; a second
/// deploy of the project-config is refused with the holder's id and none of its events land;
/// after a release it can acquire; an expired lease can be taken over; a release by a
/// non-holder is refused.
#[tokio::test]
async fn lock_contention_between_two_deploys() {
    let store = new_store("lock").await;
    let memory = MemoryStore::new();
    macro_rules! both {
        ($append:expr) => {{
            let append: Append = $append;
            let dynamo = store.append(append.clone()).await;
            assert_eq!(dynamo, memory.append(append).await, "DynamoDB and memory agree");
            dynamo
        }};
    }
    // Given deploy A holds the lock
    let a = chain(None, vec![(T0, lock_event(T0))]);
    both!(Append { deploy: "A".into(), events: a.clone(), lock: acquire("A", T0), index: None, snapshot: None }).expect("A acquires");

    // When deploy B tries to acquire it
    let b = chain(None, vec![(T0.plus_secs(1), lock_event(T0.plus_secs(1)))]);
    let b_acquire = Append { deploy: "B".into(), events: b.clone(), lock: acquire("B", T0.plus_secs(1)), index: None, snapshot: None };
    // Then it is told who holds it, and its event did not land
    assert_eq!(both!(b_acquire.clone()), Err(AppendError::LockHeld { holder: "A".into() }));
    assert_eq!(store.load("B").await.unwrap(), vec![]);

    // And B cannot release A's lock either
    let b_release = Append { deploy: "B".into(), events: vec![], lock: release("B"), index: None, snapshot: None };
    assert_eq!(both!(b_release), Err(AppendError::LockHeld { holder: "A".into() }));

    // When A releases the lock (with its LockReleased event), B can acquire it
    let a_released = chain(a.last(), vec![(T0.plus_secs(2), Event::LockReleased)]);
    both!(Append { deploy: "A".into(), events: a_released.clone(), lock: release("A"), index: None, snapshot: None }).expect("A releases");
    // (releasing a lock that is already gone is no error)
    both!(Append { deploy: "A".into(), events: vec![], lock: release("A"), index: None, snapshot: None })
        .expect("a second release is no error");
    both!(b_acquire).expect("B acquires once A released");
    assert_eq!(store.load("B").await.unwrap(), b);

    // When B's lease has run out, C takes the lock over
    let late = T0.plus_secs(1 + 600 + 1);
    let c = chain(None, vec![(late, lock_event(late))]);
    both!(Append { deploy: "C".into(), events: c, lock: acquire("C", late), index: None, snapshot: None })
        .expect("C takes over an expired lease");
    // And B, re-acquiring at a time its lease had not run out, finds C
    let d = chain(Some(&b[0]), vec![(T0.plus_secs(3), halt("still mine?"))]);
    assert_eq!(
        both!(Append { deploy: "B".into(), events: d, lock: acquire("B", T0.plus_secs(3)), index: None, snapshot: None }),
        Err(AppendError::LockHeld { holder: "C".into() })
    );
}

/// Pins: a history over 1 MB (DynamoDB's page size) loads whole and in order.
#[tokio::test]
async fn a_history_over_one_megabyte_loads_whole_and_in_order() {
    // Given 3,000 events of ~400-byte bodies (about 1.5 MB). The first 198 and the last are
    // appended through the store, 99 at a time (with the gap check, 100 items a transaction); the
    // rest are written with BatchWriteItem in the store's item format, because moto deep-copies
    // the whole table for every item of a TransactWriteItems, which makes 3,000 transactional
    // appends take minutes.
    let store = new_store("large").await;
    let filler = "x".repeat(400);
    let events = chain(None, (0..3_000u64).map(|i| (T0.plus_ms(i), halt(&format!("{i} {filler}")))).collect());
    for batch in events[..198].chunks(99) {
        store.append(append("big", batch.to_vec())).await.expect("a batch is appended");
    }
    for batch in events[198..2_999].chunks(25) {
        let writes = batch
            .iter()
            .map(|event| {
                let put = PutRequest::builder().set_item(Some(event_item("big", event).unwrap())).build().unwrap();
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        let written = store.client.batch_write_item().request_items(&store.table, writes).send().await.expect("written");
        assert!(written.unprocessed_items().is_none_or(|u| u.is_empty()), "moto processes every item");
    }
    store.append(append("big", events[2_999..].to_vec())).await.expect("the last event is appended");
    let first_page = store
        .client
        .query()
        .table_name(&store.table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(event_pk("big")))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert!(first_page.last_evaluated_key().is_some(), "the history does not fit one page");
    assert!(first_page.items().len() < 3_000);

    // When it is loaded
    let loaded = store.load("big").await.expect("loaded");

    // Then every event is there, in seq order, and the chain verifies
    assert_eq!(loaded.len(), 3_000);
    assert!(loaded.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1));
    assert_eq!(loaded, events);
    codec::verify_chain(&loaded).expect("the chain verifies");
}

/// Pins: an event overwritten in the table (by someone with write access, bypassing skald) is
/// found by the hash chain, which names its seq.
#[tokio::test]
async fn a_tampered_event_is_detected_by_the_hash_chain() {
    // Given a deploy of five events
    let store = new_store("tamper").await;
    let events = chain(None, (1..=5).map(|i| (T0.plus_secs(i), halt(&format!("reason {i}")))).collect());
    store.append(append("d1", events.clone())).await.unwrap();
    codec::verify_chain(&store.load("d1").await.unwrap()).expect("intact at first");

    // When an attacker overwrites seq 3's body directly
    let mut forged = events[2].clone();
    forged.body = json!({"reason": "nothing to see here"});
    let item = event_item("d1", &forged).unwrap();
    store.client.put_item().table_name(&store.table).set_item(Some(item)).send().await.expect("the raw write succeeds");

    // Then the loaded history fails verification at seq 3
    let loaded = store.load("d1").await.unwrap();
    assert_eq!(loaded[2].body, json!({"reason": "nothing to see here"}));
    let broken = codec::verify_chain(&loaded).expect_err("tampering is detected");
    assert_eq!(broken.seq, 3);
}

/// Pins: an append that would leave a gap in the seqs is refused and writes nothing.
#[tokio::test]
async fn an_append_leaving_a_gap_is_refused() {
    let store = new_store("gap").await;
    let events = chain(None, vec![(T0, halt("1")), (T0, halt("2")), (T0, halt("3"))]);
    store.append(append("d1", events[..1].to_vec())).await.unwrap();
    let refused = store.append(append("d1", events[2..].to_vec())).await;
    assert!(matches!(refused, Err(AppendError::Store(ref e)) if e.0.contains("gap")), "{refused:?}");
    assert_eq!(store.load("d1").await.unwrap(), events[..1].to_vec());
}

/// Pins: deploys() lists a project-config's deploys newest first (ties of one millisecond by
/// deploy id), at most `limit`, exactly as the memory store does; an unknown deploy loads empty.
#[tokio::test]
async fn deploys_are_listed_newest_first() {
    // Given five deploys' first events with index entries, two created in the same millisecond
    let store = new_store("index").await;
    let memory = MemoryStore::new();
    let created = [("01A", 10), ("01C", 30), ("01B", 20), ("01E", 30), ("01D", 40)];
    for (deploy, secs) in created {
        let at = T0.plus_secs(secs);
        let index = IndexEntry { key: key(), deploy: deploy.into(), created_at: at };
        let first =
            Append { deploy: deploy.into(), events: chain(None, vec![(at, halt(deploy))]), lock: None, index: Some(index), snapshot: None };
        store.append(first.clone()).await.unwrap();
        memory.append(first).await.unwrap();
    }
    let other = LockKey { project: "other".into(), config: "production".into() };

    // When they are listed
    let listed: Vec<String> = store.deploys(&key(), 10).await.unwrap().into_iter().map(|e| e.deploy).collect();

    // Then newest first, ties by deploy id (descending), as in memory
    assert_eq!(listed, ["01D", "01E", "01C", "01B", "01A"]);
    for limit in 0..=6 {
        assert_eq!(store.deploys(&key(), limit).await.unwrap(), memory.deploys(&key(), limit).await.unwrap(), "limit {limit}");
    }
    assert_eq!(store.deploys(&other, 10).await.unwrap(), vec![]);
    assert_eq!(store.load("never-heard-of").await.unwrap(), vec![]);
    let entry = &store.deploys(&key(), 1).await.unwrap()[0];
    assert_eq!((entry.created_at, &entry.key), (T0.plus_secs(40), &key()));
}

/// Pins: create_table is idempotent (a second call finds the table and returns).
#[tokio::test]
async fn create_table_twice_is_fine() {
    let store = new_store("create").await;
    create_table(&store.client, &store.table).await.expect("a second create is no error");
}

/// Pins: the real runner drives a whole blue/green deploy to Success over the DynamoDB store,
/// leaving a verifiable history, no lock, and the deploy in the index.
#[tokio::test]
async fn the_runner_deploys_end_to_end_over_dynamodb() {
    // Given the example release on a simulated cloud, with the events in DynamoDB
    let store = new_store("runner").await;
    let clock = VirtualClock::starting_at(T0);
    let queue = Arc::new(MemoryQueue::new(clock.clone(), VISIBILITY_SECS));
    let cloud = SimCloud::new(clock.clone(), Timings::default());
    let mut release = example_release();
    release.user_data = Some("#!/bin/sh\necho hello\n".into());
    provision_example(&cloud, &release);
    let runner = Runner { store: store.clone(), queue: queue.clone(), cloud, clock: clock.clone(), config: RunnerConfig::default() };
    let deploy = "01JD00000000000000000000EX";
    queue.push(&Message::DeployRequested { release: Box::new(release.clone()), release_id: deploy.into(), created_at: T0 }, 0);

    // When messages are delivered until the queue is empty
    for _ in 0..2_000 {
        let delivery = match queue.receive() {
            Some(delivery) => delivery,
            None => match queue.next_visible_at() {
                Some(at) => {
                    clock.advance_to(at);
                    queue.receive().expect("a message is due")
                }
                None => break,
            },
        };
        let result = runner.handle(delivery.message.clone(), None, delivery.receive_count > 1).await;
        if matches!(result, Ok(_) | Err(RunError::Rejected(_))) {
            queue.delete(delivery.receipt);
        }
    }

    // Then the deploy succeeded, its history verifies, the lock is free and the index lists it
    let history = store.load(deploy).await.unwrap();
    codec::verify_chain(&history).expect("the chain verifies");
    let recorded: Vec<Recorded> = history.iter().map(|e| codec::decode(e).unwrap()).collect();
    assert_eq!(fold(&recorded).unwrap().end, Some(End::Success), "the deploy ends in Success");
    let listed = store.deploys(&key(), 5).await.unwrap();
    assert_eq!(listed.iter().map(|e| e.deploy.as_str()).collect::<Vec<_>>(), [deploy]);
    let lock = store
        .client
        .get_item()
        .table_name(&store.table)
        .key("pk", AttributeValue::S(format!("lock#{}#{}", key().project, key().config)))
        .key("sk", AttributeValue::N("0".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert!(lock.item().is_none(), "the lock was released");
    assert!(clock.now() > T0);
}

#[tokio::test]
async fn a_step_reads_the_latest_snapshot_and_only_the_events_after_it() {
    // Given 60 events, with a snapshot of the state after seq 50 stored alongside seq 50
    let store = new_store("snapshot").await;
    let release = example_release();
    let requested = Event::DeployRequested {
        release_id: "S".into(),
        created_at: T0,
        release_digest: codec::release_digest(&release),
        release: Box::new(release),
        requested_by: None,
        freshness: Default::default(),
        settings: None,
        rules: skald_engine::workflow::event::RULES_CURRENT,
        frozen: None,
    };
    let mut events = chain(None, vec![(T0, requested)]);
    events.extend(chain(events.last(), (2..=50).map(|n| (T0.plus_secs(n), halt("h"))).collect()));
    let (recorded, state) = codec::read_history(&events).unwrap();
    assert_eq!(recorded.len(), 50);
    let snapshot = codec::Snapshot::of(&state, &events[49].hash);
    let (first, rest) = events.split_at(49);
    store.append(append("S", first.to_vec())).await.unwrap();
    store
        .append(Append { deploy: "S".into(), events: rest.to_vec(), lock: None, index: None, snapshot: Some(snapshot.clone()) })
        .await
        .unwrap();
    let later = chain(events.last(), (51..=60).map(|n| (T0.plus_secs(n), halt("h"))).collect());
    store.append(append("S", later.clone())).await.unwrap();

    // When a step loads the deploy
    let tail = store.load_tail("S").await.unwrap();

    // Then it gets the snapshot, which decodes to the state at seq 50, and the 10 events after it
    assert_eq!(tail.snapshot.as_ref().map(|s| s.seq), Some(50));
    assert_eq!(tail.snapshot.unwrap().state(), Some(state));
    assert_eq!(tail.events, later);
    assert_eq!(store.load("S").await.unwrap().len(), 60, "the whole history is still there");
}

#[tokio::test]
async fn the_sweeper_watches_each_lock_holder_once() {
    // Given deploy A holding the lock of a project-config
    let store = new_store("held-locks").await;
    let a = chain(None, vec![(T0, lock_event(T0))]);
    store.append(Append { deploy: "A".into(), events: a.clone(), lock: acquire("A", T0), index: None, snapshot: None }).await.unwrap();

    // When the sweeper lists the locks, before and after A gives its lock back
    let while_held = store.watched().await.unwrap();
    let released = chain(a.last(), vec![(T0.plus_secs(1), halt("done"))]);
    store.append(Append { deploy: "A".into(), events: released, lock: release("A"), index: None, snapshot: None }).await.unwrap();
    let after = store.watched().await.unwrap();

    // Then A is listed while it holds the lock, and nothing after
    assert_eq!(while_held, [(key(), "A".to_string())]);
    assert!(after.is_empty(), "{after:?}");
}

#[tokio::test]
async fn a_deploy_waiting_for_a_lock_is_watched_until_it_takes_the_lock_or_ends() {
    // Given A holding the lock, and B and C noted as waiting for it (on_concurrent_deploy: rollback)
    let store = new_store("waiters").await;
    let a = chain(None, vec![(T0, lock_event(T0))]);
    store.append(Append { deploy: "A".into(), events: a.clone(), lock: acquire("A", T0), index: None, snapshot: None }).await.unwrap();
    let wait = |owner: &str| Some(LockOp::Watch { key: key(), owner: owner.into() });
    let b = chain(None, vec![(T0, halt("denied, waiting"))]);
    store.append(Append { deploy: "B".into(), events: b.clone(), lock: wait("B"), index: None, snapshot: None }).await.unwrap();
    let c = chain(None, vec![(T0, halt("denied, waiting"))]);
    store.append(Append { deploy: "C".into(), events: c.clone(), lock: wait("C"), index: None, snapshot: None }).await.unwrap();
    let mut while_waiting = store.watched().await.unwrap();
    while_waiting.sort();

    // When A gives the lock back, B takes it, and C ends without it
    let released = chain(a.last(), vec![(T0.plus_secs(1), halt("done"))]);
    store.append(Append { deploy: "A".into(), events: released, lock: release("A"), index: None, snapshot: None }).await.unwrap();
    let taken = chain(b.last(), vec![(T0.plus_secs(2), lock_event(T0.plus_secs(2)))]);
    store
        .append(Append { deploy: "B".into(), events: taken, lock: acquire("B", T0.plus_secs(2)), index: None, snapshot: None })
        .await
        .unwrap();
    let ended = chain(c.last(), vec![(T0.plus_secs(3), halt("ended"))]);
    let unwait = Some(LockOp::Unwatch { key: key(), owner: "C".into() });
    store.append(Append { deploy: "C".into(), events: ended, lock: unwait, index: None, snapshot: None }).await.unwrap();

    // Then the sweeper saw all three while B and C waited, and B alone after (its note went with
    // the lock it took; C's with its end)
    let who = |listed: &[(LockKey, String)]| listed.iter().map(|(k, o)| (k.clone(), o.clone())).collect::<Vec<_>>();
    assert_eq!(who(&while_waiting), [(key(), "A".to_string()), (key(), "B".to_string()), (key(), "C".to_string())]);
    assert_eq!(store.watched().await.unwrap(), [(key(), "B".to_string())]);
    assert_eq!(store.lock_owner(&key()).await.unwrap(), Some("B".to_string()), "the lock item is B's, untouched by notes");
}

// ---- deploy freezes --------------------------------------------------------------------------

fn freeze() -> Freeze {
    Freeze { by: "arn:aws:sts::123456789012:assumed-role/skald-on-call/odin".into(), reason: "peak traffic".into(), since: T0 }
}

// Pins: the freeze item round-trips (by, reason, since), stands beside the lock at
// `freeze#<project>#<config>` / 0 with the documented attributes and is invisible to the sweeper;
// a second freeze leaves the first standing; an unfreeze removes it and returns it.
#[tokio::test]
async fn a_freeze_item_round_trips_and_a_second_freeze_leaves_the_first_standing() {
    // Given a table where nothing is frozen
    let store = new_store("freeze").await;
    assert_eq!(store.freeze(&key()).await.unwrap(), None);

    // When the project-config is frozen, and someone freezes it again
    store.put_freeze(&key(), &freeze()).await.unwrap().expect("nothing was frozen");
    let second = Freeze { by: "arn:aws:iam::123456789012:user/other".into(), reason: "me too".into(), since: T0.plus_secs(60) };
    let again = store.put_freeze(&key(), &second).await.unwrap();

    // Then the first freeze stands, reads back whole, and only for its project-config
    assert_eq!(again, Err(freeze()));
    assert_eq!(store.freeze(&key()).await.unwrap(), Some(freeze()));
    let staging = LockKey { config: "staging".into(), ..key() };
    assert_eq!(store.freeze(&staging).await.unwrap(), None);
    let item = store
        .client
        .get_item()
        .table_name(&store.table)
        .key("pk", AttributeValue::S(freeze_pk(&key())))
        .key("sk", AttributeValue::N("0".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let item = item.item().expect("the freeze item");
    assert_eq!(item["pk"], AttributeValue::S("freeze#coinbase/deploy-test#production".into()));
    assert_eq!(item["by"], AttributeValue::S(freeze().by));
    assert_eq!(item["reason"], AttributeValue::S("peak traffic".into()));
    assert_eq!(item["since"], AttributeValue::N(T0.as_ms().to_string()));
    assert!(!item.contains_key("held"), "the sweeper's index never lists a freeze");
    assert!(store.watched().await.unwrap().is_empty());

    // And an unfreeze lifts it once
    assert_eq!(store.delete_freeze(&key()).await.unwrap(), Some(freeze()));
    assert_eq!(store.freeze(&key()).await.unwrap(), None);
    assert_eq!(store.delete_freeze(&key()).await.unwrap(), None);
}

/// Delivers the runner's messages until its queue is empty, letting virtual time pass.
async fn deliver_all(runner: &Runner<DynamoStore, Arc<MemoryQueue>, SimCloud, Arc<VirtualClock>>) {
    for _ in 0..2_000 {
        let delivery = match runner.queue.receive() {
            Some(delivery) => delivery,
            None => match runner.queue.next_visible_at() {
                Some(at) => {
                    runner.clock.advance_to(at);
                    runner.queue.receive().expect("a message is due")
                }
                None => return,
            },
        };
        let result = runner.handle(delivery.message.clone(), None, delivery.receive_count > 1).await;
        if matches!(result, Ok(_) | Err(RunError::Rejected(_))) {
            runner.queue.delete(delivery.receipt);
        }
    }
    panic!("the queue did not run dry within 2000 messages");
}

// Pins: the runner reads the freeze from DynamoDB with the request and records it there; the
// deploy is refused before the lock (FailureClean, BadRelease) and its history verifies; once
// unfrozen the next deploy succeeds.
#[tokio::test]
async fn the_runner_refuses_a_frozen_deploy_over_dynamodb_and_deploys_once_unfrozen() {
    // Given the example release on a simulated cloud, events in DynamoDB, the project-config frozen
    let store = new_store("frozen-runner").await;
    let clock = VirtualClock::starting_at(T0);
    let queue = Arc::new(MemoryQueue::new(clock.clone(), VISIBILITY_SECS));
    let cloud = SimCloud::new(clock.clone(), Timings::default());
    let release = example_release();
    provision_example(&cloud, &release);
    let runner = Runner { store: store.clone(), queue: queue.clone(), cloud, clock: clock.clone(), config: RunnerConfig::default() };
    store.put_freeze(&key(), &freeze()).await.unwrap().unwrap();

    // When a release is deployed
    let refused = "01JD00000000000000000000F1";
    queue.push(&Message::DeployRequested { release: Box::new(release.clone()), release_id: refused.into(), created_at: T0 }, 0);
    deliver_all(&runner).await;

    // Then its history holds the freeze and the refusal, and verifies
    let history = store.load(refused).await.unwrap();
    skald_engine::replay::verify(&history).expect("the refused deploy's history verifies");
    let recorded: Vec<Recorded> = history.iter().map(|e| codec::decode(e).unwrap()).collect();
    let Event::DeployRequested { frozen, .. } = &recorded[0].event else { panic!("a request first") };
    assert_eq!(frozen.as_ref(), Some(&freeze()));
    let state = fold(&recorded).unwrap();
    assert!(
        matches!(&state.end, Some(End::Failure { error: ErrorKind::BadRelease, cleanliness: Cleanliness::Clean, reason }) if reason.contains("peak traffic")),
        "{:?}",
        state.end
    );
    assert!(!recorded.iter().any(|r| matches!(r.event, Event::LockAcquired { .. })), "refused before the lock");

    // And once unfrozen, the next release deploys
    store.delete_freeze(&key()).await.unwrap();
    let deployed = "01JD00000000000000000000F2";
    queue.push(&Message::DeployRequested { release: Box::new(release), release_id: deployed.into(), created_at: clock.now() }, 0);
    deliver_all(&runner).await;
    let recorded: Vec<Recorded> = store.load(deployed).await.unwrap().iter().map(|e| codec::decode(e).unwrap()).collect();
    assert_eq!(fold(&recorded).unwrap().end, Some(End::Success));
}
