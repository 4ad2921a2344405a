//! The PAS audit stream end to end: the real binary on a generated datastore, delivering to a
//! real HTTP server (the testkit sink) that fails in scripted ways.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bronze::pas::{ChainView, PasEvent};
use bronze_testkit::{Behaviour, HttpSink, RecordedRequest, Reply};

use crate::binary::describe;
use crate::harness::{CrashDice, Harness, run_killed_after_lines};

const TOKEN: &str = "s3cr3t-token-value";

/// A sink that answers according to `mode` and remembers the bodies it accepted (2xx).
struct Receiver {
    sink: HttpSink,
    accepted: Arc<Mutex<Vec<Vec<u8>>>>,
    mode: Arc<Mutex<Mode>>,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Ok,
    Fail500,
    /// Answer after this long (beyond the client's timeout).
    Slow(Duration),
    Drop,
    /// Accept this many more events, then fail with 500.
    AcceptThen(usize),
}

impl Receiver {
    fn start(mode: Mode) -> Receiver {
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(Mutex::new(mode));
        let (acc, m) = (accepted.clone(), mode.clone());
        let sink = HttpSink::start(Behaviour::custom(move |req: &RecordedRequest| {
            let mut mode = m.lock().unwrap();
            let accept = |acc: &Arc<Mutex<Vec<Vec<u8>>>>| {
                acc.lock().unwrap().push(req.body.clone());
                Reply::status(200)
            };
            match *mode {
                Mode::Ok => accept(&acc),
                Mode::Fail500 => Reply::status(500).with_body("receiver down"),
                Mode::Slow(d) => Reply::status(200).after(d),
                Mode::Drop => Reply::drop_connection(),
                Mode::AcceptThen(0) => Reply::status(500).with_body("receiver down"),
                Mode::AcceptThen(n) => {
                    *mode = Mode::AcceptThen(n - 1);
                    accept(&acc)
                }
            }
        }));
        Receiver {
            sink,
            accepted,
            mode,
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn accepted(&self) -> Vec<Vec<u8>> {
        self.accepted.lock().unwrap().clone()
    }

    /// `pas:` lines for this sink.
    fn pas_config(&self, strict: bool, timeout_ms: u64) -> String {
        format!(
            "  endpoint: \"{}/v1/events\"\n  strict: {strict}\n  timeout_ms: {timeout_ms}\n",
            self.sink.url()
        )
    }
}

fn with_token(setup: &Harness, args: &[&str]) -> std::process::Output {
    setup
        .command(args)
        .env("PAS_TOKEN", TOKEN)
        .output()
        .unwrap()
}

/// Every partition's event was accepted at least once, under its own id, first deliveries in
/// ledger order.
fn assert_all_delivered(setup: &Harness, receiver: &Receiver) {
    let chain = setup.chain();
    let accepted = receiver.accepted();
    let ids = delivered_ids(&accepted);
    for e in &chain.events {
        assert_eq!(
            ids.get(&e.event.event_id),
            Some(&e.range.start),
            "event {} of {} was never accepted",
            e.event.event_id,
            e.range
        );
    }
    assert_eq!(ids.len(), chain.events.len(), "no foreign event ids");
    let mut seen = BTreeSet::new();
    let first_order: Vec<u32> = accepted
        .iter()
        .map(|b| PasEvent::from_json(b).unwrap())
        .filter(|e| seen.insert(e.event_id.clone()))
        .map(|e| e.partition.ledger_start)
        .collect();
    assert!(
        first_order.windows(2).all(|w| w[0] < w[1]),
        "first deliveries out of ledger order: {first_order:?}"
    );
}

#[test]
fn healthy_run_makes_a_linear_complete_chain_and_delivers_every_event() {
    let receiver = Receiver::start(Mode::Ok);
    let setup = Harness::testnet(200)
        .partition_size(20)
        .pas(&receiver.pas_config(true, 5_000));
    let out = with_token(&setup, &["-no-progress"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = describe(&out);
    assert!(!text.contains(TOKEN), "the token leaked into the output");

    let chain = setup.chain();
    assert_linear_complete(&chain, &setup.ranges());
    assert_all_delivered(&setup, &receiver);

    // Each request: the compact event exactly as the outbox holds it, with the headers.
    let requests = receiver.sink.requests();
    assert_eq!(requests.len(), chain.events.len(), "one request per event");
    for (req, stored) in requests.iter().zip(&chain.events) {
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/events");
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(
            req.header("idempotency-key"),
            Some(stored.event.event_id.as_str())
        );
        assert_eq!(
            req.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(req.body_text(), stored.event.to_compact_json());
    }
    // The original's heads file, and our delivery cursor at the last event.
    let heads: serde_json::Value = serde_json::from_slice(
        &std::fs::read(setup.backup_dir().join("pas-chain-heads.json")).unwrap(),
    )
    .unwrap();
    let last = chain.last().unwrap();
    assert_eq!(
        heads["testnet/pre_p23/v1"],
        last.event.chain.event_hash.as_str()
    );
    let delivery: serde_json::Value = serde_json::from_slice(
        &std::fs::read(setup.backup_dir().join("pas-delivery.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        delivery["testnet/pre_p23/v1"]["event_id"],
        last.event.event_id.as_str()
    );

    setup.assert_verifies();

    // A second run has nothing to copy and mints nothing new.
    let again = with_token(&setup, &["-no-progress"]);
    assert!(again.status.success(), "{}", describe(&again));
    assert_eq!(setup.chain().events.len(), chain.events.len());
    assert_eq!(
        receiver.sink.request_count(),
        requests.len(),
        "nothing re-sent"
    );
}

/// Strict mode with a receiver that accepts 3 events and then fails in `failure`'s way.
fn strict_failure_then_restart(failure: Mode, timeout_ms: u64) {
    let receiver = Receiver::start(Mode::AcceptThen(3));
    let setup = Harness::testnet(200)
        .partition_size(20)
        .pas(&receiver.pas_config(true, timeout_ms));
    receiver.set(Mode::AcceptThen(3));
    // Accept 3, then switch to the failure for everything after.
    let out = {
        let r = &receiver;
        let child = setup
            .command(&["-no-progress"])
            .env("PAS_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The failure replaces the 500 of AcceptThen(0) once 3 were accepted.
        while r.accepted().len() < 3 {
            std::thread::sleep(Duration::from_millis(5));
        }
        r.set(failure);
        child.wait_with_output().unwrap()
    };
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was not accepted by"),
        "{}",
        describe(&out)
    );
    // The 4th partition (62-81) is committed and its event is in the outbox, but the checkpoint
    // did not pass it.
    let chain = setup.chain();
    assert!(chain.issues.is_empty(), "{:?}", chain.issues);
    let ranges = setup.ranges();
    assert_eq!(
        chain.events.len(),
        4,
        "outbox first: the undelivered event is stored"
    );
    assert_eq!(chain.last().unwrap().range.start, ranges[3].0);
    assert_eq!(setup.checkpoint_ledger(), Some(ranges[2].1));
    let undelivered = chain.last().unwrap().event.clone();

    // Restart with a healthy receiver: the pending event first, then the rest.
    receiver.set(Mode::Ok);
    let out = with_token(&setup, &["-no-progress"]);
    assert!(out.status.success(), "{}", describe(&out));
    let chain = setup.chain();
    assert_linear_complete(&chain, &ranges);
    assert_eq!(
        chain.events[3].event, undelivered,
        "the stored event was delivered, not re-made"
    );
    assert_all_delivered(&setup, &receiver);
    setup.assert_verifies();
}

#[test]
fn strict_mode_stops_on_500s_and_a_restart_delivers_without_fork() {
    strict_failure_then_restart(Mode::Fail500, 2_000);
}

#[test]
fn strict_mode_stops_on_timeouts_and_a_restart_delivers_without_fork() {
    strict_failure_then_restart(Mode::Slow(Duration::from_millis(1_500)), 300);
}

#[test]
fn strict_mode_stops_on_dropped_connections_and_a_restart_delivers_without_fork() {
    strict_failure_then_restart(Mode::Drop, 2_000);
}

#[test]
fn lenient_mode_completes_while_the_receiver_is_down_and_delivers_when_it_is_back() {
    let receiver = Receiver::start(Mode::Fail500);
    let setup = Harness::testnet(200)
        .partition_size(20)
        .pas(&receiver.pas_config(false, 500));
    let out = with_token(&setup, &["-no-progress"]);
    assert!(out.status.success(), "{}", describe(&out));
    let ranges = setup.ranges();
    assert_eq!(setup.checkpoint_ledger(), Some(ranges.last().unwrap().1));
    assert_linear_complete(&setup.chain(), &ranges);
    assert!(receiver.accepted().is_empty());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("PAS events not delivered yet") && stdout.contains("pending"),
        "{}",
        describe(&out)
    );
    let verified = setup.assert_verifies();
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains("check=pas.delivery"),
        "{}",
        describe(&verified)
    );

    // Back up: the next start re-sends everything pending, in order, and nothing is re-made.
    receiver.set(Mode::Ok);
    let out = with_token(&setup, &["-no-progress"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_linear_complete(&setup.chain(), &ranges);
    assert_all_delivered(&setup, &receiver);
}

#[test]
fn lenient_mode_recovers_within_the_run() {
    // The first 5 requests fail; the background task retries in order while the copier goes on.
    let receiver = Receiver::start(Mode::Ok);
    let failures = Arc::new(Mutex::new(5usize));
    let (acc, f) = (receiver.accepted.clone(), failures.clone());
    receiver
        .sink
        .set_behaviour(Behaviour::custom(move |req: &RecordedRequest| {
            let mut left = f.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Reply::status(503);
            }
            acc.lock().unwrap().push(req.body.clone());
            Reply::status(200)
        }));
    let setup = Harness::testnet(200)
        .partition_size(20)
        .pas(&receiver.pas_config(false, 2_000));
    let out = with_token(&setup, &["-no-progress"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_linear_complete(&setup.chain(), &setup.ranges());
    assert_all_delivered(&setup, &receiver);
    assert_eq!(*failures.lock().unwrap(), 0);
}

/// Kills the copier with SIGKILL at varied moments, restarts until it finishes: the output
/// verifies, the chain has exactly one event per partition and no fork, every event delivered.
#[test]
fn sigkill_at_random_moments_then_restart_until_done() {
    let receiver = Receiver::start(Mode::Ok);
    let setup = Harness::testnet(300)
        .partition_size(10)
        .pas(&receiver.pas_config(true, 2_000));
    let mut dice = CrashDice::from_clock();
    let mut kills = 0;
    for round in 0..12 {
        // Kill after N lines of output, or let it finish.
        let kill_after = if round < 8 {
            Some(3 + dice.below(25))
        } else {
            None
        };
        let (status, killed) =
            run_killed_after_lines(setup.command(&["-no-progress"]), kill_after, &mut dice);
        if killed {
            kills += 1;
            continue;
        }
        if status.success() && setup.checkpoint_ledger() == Some(setup.ledger_end) {
            break;
        }
        assert!(
            status.success() || status.code().is_none(),
            "round {round}: {status:?}"
        );
    }
    assert!(kills >= 1, "the test killed nothing");
    let final_run = with_token(&setup, &["-no-progress"]);
    assert!(final_run.status.success(), "{}", describe(&final_run));
    assert_eq!(setup.checkpoint_ledger(), Some(setup.ledger_end));
    assert_linear_complete(&setup.chain(), &setup.ranges());
    assert_all_delivered(&setup, &receiver);
    let verified = setup.verify();
    assert_eq!(
        verified.status.code(),
        Some(0),
        "seed {}: {}",
        dice.seed,
        describe(&verified)
    );
}

/// A chain started by the original (its manifests, its events: time-based ids, nanosecond
/// timestamps, no delivery record) is accepted by `verify` and continued by the copier.
#[test]
fn a_chain_started_by_the_original_is_verified_and_continued() {
    // The "original" backfilled 2-201, without PAS.
    let mut setup = Harness::testnet(300).range(2, 201).partition_size(100);
    let out = setup.run();
    assert!(out.status.success(), "{}", describe(&out));
    std::fs::create_dir_all(setup.backup_dir()).unwrap();
    let chain_id = bronze::pas::ChainId {
        network: "testnet".into(),
        era_id: "pre_p23".into(),
        version_label: "v1".into(),
    };
    let mut prev = String::new();
    for (i, (start, end)) in setup.ranges().into_iter().enumerate() {
        let dir = setup.partition_dir(start, end);
        let manifest_path = dir.join("_manifest.json");
        // The original's manifest: none of our additions.
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
        for key in [
            "chain",
            "ingested_at",
            "network_passphrase",
            "manifest_sha256",
        ] {
            m.as_object_mut().unwrap().remove(key);
        }
        m["producer"]["version"] = "v0.1.0".into();
        std::fs::write(&manifest_path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        let manifest =
            bronze::publish::Manifest::from_json(&std::fs::read(&manifest_path).unwrap()).unwrap();
        let at =
            chrono::DateTime::from_timestamp(1_763_892_000 + i as i64 * 60, 123_456_700).unwrap();
        let mut e = bronze::pas::PasEvent::for_partition(
            &chain_id,
            &manifest,
            &format!("testnet/pre_p23/v1/ledgers_lcm_raw/range={start}-{end}"),
            &prev,
            at,
        );
        e.event_id = format!("pas_evt_{:016x}", 0xfeed_0000_u64 + i as u64);
        e.producer.version = "v0.1.0".into();
        e.producer.git_sha = "unknown".into();
        e.chain.event_hash = e.compute_hash();
        prev = e.chain.event_hash.clone();
        std::fs::write(
            setup
                .backup_dir()
                .join(format!("testnet_pre_p23_v1_{start}-{end}.json")),
            e.to_indented_json(),
        )
        .unwrap();
    }
    std::fs::write(
        setup.backup_dir().join("pas-chain-heads.json"),
        format!("{{\n  \"testnet/pre_p23/v1\": \"{prev}\"\n}}"),
    )
    .unwrap();
    let _ = chain_id;

    // Our copier, PAS on, continues to 301.
    setup.ledger_end = 301;
    setup.pas = Some(String::new());
    setup.assert_verifies();
    let out = setup.run();
    assert!(out.status.success(), "{}", describe(&out));
    let chain = setup.chain();
    assert_linear_complete(&chain, &setup.ranges());
    assert_eq!(chain.events[2].event.chain.prev_event_hash, prev);
    setup.assert_verifies();
}

/// Partitions committed before PAS was on (or before a crash between commit and event) are
/// adopted when presented again, and each gets its event: no holes.
#[test]
fn adopted_partitions_without_events_get_them_in_order() {
    let mut setup = Harness::testnet(200).partition_size(20);
    let out = setup.run();
    assert!(out.status.success(), "{}", describe(&out));
    // Without the checkpoint the copier re-presents every committed partition (adopted, not
    // rebuilt); with PAS on, each one gets its event.
    std::fs::remove_file(setup.checkpoint_path()).unwrap();
    setup.pas = Some(String::new());
    let out = setup.run();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("adopted=true"),
        "{}",
        describe(&out)
    );
    assert_linear_complete(&setup.chain(), &setup.ranges());
    setup.assert_verifies();
}

/// A recorded head that is neither the last event nor the one before it: the copier refuses to
/// continue (it would fork) and says why.
#[test]
fn a_heads_file_that_disagrees_with_the_events_stops_the_copier() {
    let mut setup = Harness::testnet(100)
        .range(2, 61)
        .partition_size(20)
        .pas("");
    let out = setup.run();
    assert!(out.status.success(), "{}", describe(&out));
    let chain = setup.chain();
    let heads = setup.backup_dir().join("pas-chain-heads.json");
    std::fs::write(
        &heads,
        format!(
            "{{\n  \"testnet/pre_p23/v1\": \"{}\"\n}}",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000"
        ),
    )
    .unwrap();
    setup.ledger_end = 101;
    let out = setup.run();
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("would fork")
            && stderr.contains(&chain.last().unwrap().event.chain.event_hash),
        "{}",
        describe(&out)
    );
    assert_eq!(setup.checkpoint_ledger(), Some(61), "nothing was copied");
    assert_eq!(
        setup.chain().events.len(),
        chain.events.len(),
        "no event was added"
    );
    let verified = setup.verify();
    assert_eq!(verified.status.code(), Some(5), "{}", describe(&verified));
    assert!(String::from_utf8_lossy(&verified.stdout).contains("check=pas.head"));
}

/// `pas.outbox: storage`: the layout the Kubernetes operator writes (events next to the data,
/// conditional create); a standalone run writes it, verify reads it, a rerun adopts it.
#[test]
fn the_storage_outbox_is_written_next_to_the_data_and_verified() {
    let mut setup = Harness::testnet(60)
        .partition_size(20)
        .pas("  outbox: \"storage\"\n");
    let out = setup.run();
    assert!(out.status.success(), "{}", describe(&out));
    let chain_dir = setup.out_dir().join("bronze/_pas/testnet/pre_p23/v1");
    let names = |dir: &std::path::Path| -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        n.sort();
        n
    };
    assert_eq!(
        names(&chain_dir),
        ["2-21.json", "22-41.json", "42-61.json", "_chain-head.json"]
    );
    assert!(
        names(&setup.backup_dir()).is_empty(),
        "nothing in pas.backup_dir"
    );
    let before = std::fs::read(chain_dir.join("42-61.json")).unwrap();
    let verified = setup.verify();
    assert!(verified.status.success(), "{}", describe(&verified));
    // verify with the default outbox looks in backup_dir and finds no events.
    setup.pas = Some(String::new());
    let elsewhere = setup.verify();
    assert!(!elsewhere.status.success());
    assert!(
        describe(&elsewhere).contains("pas.missing"),
        "{}",
        describe(&elsewhere)
    );
    // A rerun over the finished backfill keeps the stored events.
    setup.pas = Some("  outbox: \"storage\"\n".into());
    let again = setup.run();
    assert!(again.status.success(), "{}", describe(&again));
    assert_eq!(std::fs::read(chain_dir.join("42-61.json")).unwrap(), before);
}

/// Asserts the chain is linear and complete: one event per range, in order, each linked to
/// the one before, every hash checking out.
fn assert_linear_complete(chain: &ChainView, ranges: &[(u32, u32)]) {
    assert!(chain.issues.is_empty(), "chain issues: {:?}", chain.issues);
    let got: Vec<(u32, u32)> = chain
        .events
        .iter()
        .map(|e| (e.range.start, e.range.end))
        .collect();
    assert_eq!(got, ranges, "one event per partition");
    let mut prev = String::new();
    for e in &chain.events {
        assert_eq!(e.event.chain.prev_event_hash, prev, "{}", e.location);
        assert_eq!(e.event.compute_hash(), e.event.chain.event_hash);
        prev = e.event.chain.event_hash.clone();
    }
}

/// event_id → ledger_start from the sink's request bodies; panics if one id named two
/// partitions or a body is not an event.
fn delivered_ids(bodies: &[Vec<u8>]) -> BTreeMap<String, u32> {
    let mut ids = BTreeMap::new();
    for body in bodies {
        let e = PasEvent::from_json(body).expect("body is a PAS event");
        let start = e.partition.ledger_start;
        if let Some(old) = ids.insert(e.event_id.clone(), start) {
            assert_eq!(
                old, start,
                "event id {} used for two partitions",
                e.event_id
            );
        }
    }
    ids
}

/// Issue 15 (9): a finished run drains undelivered events for up to timeout × attempts (here
/// 50 s) against an unreachable endpoint; SIGTERM during that drain stops it at once with 143,
/// the events staying in the outbox for the next start.
#[test]
fn sigterm_cuts_the_final_pas_drain_short() {
    let port = bronze_testkit::free_port(); // nothing listens there
    let setup = Harness::testnet(40)
        .partition_size(20)
        .perf("retry_attempts", 5)
        .pas(&format!(
            "  endpoint: \"http://127.0.0.1:{port}/v1/events\"\n  strict: false\n  timeout_ms: 10000\n"
        ));
    let log = setup.path("run.log");
    let mut child = setup.spawn_logging_to(&log);
    let draining = crate::binary::wait_until(60, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("delivering the remaining PAS events")
    });
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        draining,
        "the run never reached its final drain:\n{}",
        text()
    );
    // Into a pause between two attempts.
    std::thread::sleep(Duration::from_millis(500));
    let signalled = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut status = None;
    crate::binary::wait_until(30, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let waited = signalled.elapsed();
    let Some(status) = status else {
        child.kill().unwrap();
        panic!("still draining 30 s after SIGTERM:\n{}", text());
    };
    assert_eq!(status.code(), Some(143), "{}", text());
    assert!(
        waited < Duration::from_secs(3),
        "exited {waited:?} after SIGTERM:\n{}",
        text()
    );
    // Everything was committed and every event is in the outbox, undelivered.
    assert_eq!(setup.checkpoint_ledger(), Some(41));
    assert_linear_complete(&setup.chain(), &setup.ranges());
    let verified = setup.assert_verifies();
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains("check=pas.delivery"),
        "{}",
        describe(&verified)
    );
}
