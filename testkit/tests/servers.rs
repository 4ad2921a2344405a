//! Start every server for real and exercise it. These run in parallel (cargo's test threads).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use bronze_testkit::{
    Behaviour, GcsProxy, HttpSink, MotoS3, Postgres, Reply, S3Dir, TempDir, duckdb_query,
    free_port, http, parquet_dump, python, unique_name,
};

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let v = f();
    eprintln!("{what} started in {:?}", t.elapsed());
    v
}

#[test]
fn free_ports_are_not_repeated() {
    let a = free_port();
    let b = free_port();
    assert_ne!(a, b);
}

#[test]
fn moto_bucket_put_get_list_delete() {
    let s3 = timed("moto", MotoS3::start);
    assert!(s3.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(s3.region(), "us-east-1");
    let env = s3.env();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("AWS_EC2_METADATA_DISABLED").as_deref(), Some("true"));
    assert_eq!(get("AWS_ENDPOINT_URL"), Some(s3.endpoint()));
    assert_eq!(get("AWS_ACCESS_KEY_ID").as_deref(), Some(s3.access_key()));

    let bucket = unique_name("moto");
    s3.create_bucket(&bucket);
    s3.put_object(&bucket, "ledgers/a b+c.xdr.zst", b"corrupt\x00bytes");
    s3.put_object(&bucket, "ledgers/2", "two");
    s3.put_object(&bucket, "other/x", "x");
    assert_eq!(
        s3.get_object(&bucket, "ledgers/a b+c.xdr.zst").as_deref(),
        Some(&b"corrupt\x00bytes"[..])
    );
    assert_eq!(s3.get_object(&bucket, "missing"), None);
    assert_eq!(
        s3.list_objects(&bucket, "ledgers/"),
        vec!["ledgers/2", "ledgers/a b+c.xdr.zst"]
    );
    assert_eq!(s3.list_objects(&bucket, "").len(), 3);
    s3.delete_object(&bucket, "ledgers/2");
    s3.delete_object(&bucket, "ledgers/2"); // idempotent
    assert_eq!(
        s3.list_objects(&bucket, "ledgers/"),
        vec!["ledgers/a b+c.xdr.zst"]
    );

    // Conditional create is what object_store's PutMode::Create relies on.
    let path = format!("/{bucket}/once");
    let first = s3.request("PUT", &path, &[("If-None-Match", "*")], b"1");
    assert_eq!(first.status, 200, "{}", first.text());
    let second = s3.request("PUT", &path, &[("If-None-Match", "*")], b"2");
    assert_eq!(second.status, 412, "{}", second.text());

    s3.reset();
    let r = s3.request("GET", &format!("/{bucket}?list-type=2"), &[], b"");
    assert_eq!(
        r.status,
        404,
        "bucket should be gone after reset: {}",
        r.text()
    );
}

#[test]
fn moto_list_paginates() {
    let s3 = MotoS3::start();
    let bucket = unique_name("page");
    s3.create_bucket(&bucket);
    for i in 0..1005 {
        s3.put_object(&bucket, &format!("k/{i:05}"), "");
    }
    let keys = s3.list_objects(&bucket, "k/");
    assert_eq!(keys.len(), 1005);
    assert_eq!(keys[1004], "k/01004");
}

#[test]
fn moto_is_killed_on_drop_with_its_group() {
    let s3 = MotoS3::start();
    let port = s3.port();
    drop(s3);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "moto still listening on {port} after drop"
    );
}

#[test]
fn moto_is_killed_when_a_test_panics() {
    let port = std::sync::Mutex::new(0u16);
    let result = std::panic::catch_unwind(|| {
        let s3 = MotoS3::start();
        *port.lock().unwrap() = s3.port();
        panic!("deliberate");
    });
    assert!(result.is_err());
    let port = *port.lock().unwrap();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "moto survived a panic"
    );
}

#[test]
fn gcs_proxy_put_get_and_conditional_create() {
    let s3 = MotoS3::start();
    let gcs = timed("nginx GCS proxy", || GcsProxy::start(&s3));
    let bucket = unique_name("gcs");
    s3.create_bucket(&bucket);

    let path = format!("/{bucket}/ledgers/0001.xdr");
    let headers = [
        ("Authorization", "Bearer dummy"),
        ("Content-Type", "application/octet-stream"),
        ("x-goog-if-generation-match", "0"),
    ];
    let put = gcs.request("PUT", &path, &headers, b"ledger-bytes");
    assert_eq!(put.status, 200, "{}\n{}", put.text(), gcs.log_tail());
    let generation = put
        .header("x-goog-generation")
        .expect("x-goog-generation header")
        .to_string();
    assert!(
        !generation.is_empty() && !generation.contains('"'),
        "{generation}"
    );

    let again = gcs.request("PUT", &path, &headers, b"other");
    assert_eq!(
        again.status,
        412,
        "second create must fail: {}",
        again.text()
    );

    let get = gcs.request("GET", &path, &[("Authorization", "Bearer dummy")], b"");
    assert_eq!(get.status, 200);
    assert_eq!(get.body, b"ledger-bytes");
    assert_eq!(get.header("x-goog-generation"), Some(generation.as_str()));
    // Through to moto: same object.
    assert_eq!(
        s3.get_object(&bucket, "ledgers/0001.xdr").as_deref(),
        Some(&b"ledger-bytes"[..])
    );

    // Update with the right generation works, a stale one fails.
    let upd = gcs.request(
        "PUT",
        &path,
        &[
            ("Content-Type", "application/octet-stream"),
            ("x-goog-if-generation-match", &generation),
        ],
        b"v2",
    );
    assert_eq!(upd.status, 200, "{}", upd.text());
    let stale = gcs.request(
        "PUT",
        &path,
        &[
            ("Content-Type", "application/octet-stream"),
            ("x-goog-if-generation-match", &generation),
        ],
        b"v3",
    );
    assert_eq!(stale.status, 412, "{}", stale.text());

    let dir = TempDir::new().unwrap();
    let sa = gcs.service_account_json(dir.path());
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&sa).unwrap()).unwrap();
    assert_eq!(json["gcs_base_url"], gcs.base_url());
    assert_eq!(json["disable_oauth"], true);
    assert_eq!(json["private_key"], "");
}

#[test]
fn postgres_select_1_and_dsn() {
    let pg = timed("postgres", Postgres::start);
    assert_eq!(pg.psql("select 1"), "1");
    assert_eq!(
        pg.dsn(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port())
    );
    pg.psql(
        "create table t (id int primary key, name text); insert into t values (1, 'a'), (2, 'b');",
    );
    assert_eq!(pg.psql("select id, name from t order by id"), "1|a\n2|b");
    let dsn = pg.create_database("catalog");
    assert!(dsn.ends_with("/catalog"));
    assert_eq!(
        pg.psql_in("catalog", "select current_database()"),
        "catalog"
    );
    let port = pg.port();
    drop(pg);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "postgres still up after drop"
    );
}

#[test]
fn postgres_psql_error_is_reported() {
    let pg = Postgres::start();
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pg.psql("select * from nope")
    }))
    .expect_err("must panic");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("nope"), "{msg}");
}

#[test]
fn postgres_two_clusters_in_parallel() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(Postgres::start);
        let b = s.spawn(Postgres::start);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.port(), b.port());
    a.psql("create table only_in_a (x int)");
    assert_eq!(
        b.psql("select count(*) from pg_tables where tablename = 'only_in_a'"),
        "0"
    );
}

fn post(url: &str, body: &str) -> std::io::Result<http::HttpResponse> {
    http::request(
        "POST",
        &format!("{url}/audit"),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

#[test]
fn sink_records_and_answers_ok() {
    let sink = HttpSink::start(Behaviour::ok());
    let r = post(&sink.url(), r#"{"ledger":1}"#).unwrap();
    assert_eq!(r.status, 200);
    let reqs = sink.wait_for_requests(1, Duration::from_secs(5));
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/audit");
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    assert_eq!(reqs[0].json()["ledger"], 1);

    sink.set_behaviour(Behaviour::created());
    assert_eq!(post(&sink.url(), "{}").unwrap().status, 201);
    assert_eq!(sink.request_count(), 2);
    assert_eq!(sink.requests()[1].index, 1);
}

#[test]
fn sink_fails_next_n_then_recovers() {
    let sink = HttpSink::start(Behaviour::fail_next(2));
    let statuses: Vec<u16> = (0..4)
        .map(|_| post(&sink.url(), "{}").unwrap().status)
        .collect();
    assert_eq!(statuses, [500, 500, 200, 200]);
    sink.set_behaviour(Behaviour::FailNext {
        remaining: 1,
        status: 503,
        then: Box::new(Behaviour::created()),
    });
    assert_eq!(post(&sink.url(), "{}").unwrap().status, 503);
    assert_eq!(post(&sink.url(), "{}").unwrap().status, 201);
}

#[test]
fn sink_delay_triggers_client_timeout() {
    let sink = HttpSink::start(Behaviour::delay(Duration::from_millis(1500)));
    let mut s = TcpStream::connect(sink.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s.write_all(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 64];
    let e = s
        .read(&mut buf)
        .expect_err("the client must time out first");
    assert!(matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    assert!(t.elapsed() < Duration::from_millis(1400));
    // The request was recorded although no answer went out yet.
    assert_eq!(
        sink.wait_for_requests(1, Duration::from_secs(1))[0].body,
        b"hi"
    );
    // A patient client gets the 200 eventually.
    let t = Instant::now();
    assert_eq!(post(&sink.url(), "{}").unwrap().status, 200);
    assert!(t.elapsed() >= Duration::from_millis(1400));
}

#[test]
fn sink_drops_connections() {
    let sink = HttpSink::start(Behaviour::drop_connection());
    let err = post(&sink.url(), "{}").expect_err("no response expected");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ),
        "{err:?}"
    );
    assert_eq!(sink.wait_for_requests(1, Duration::from_secs(5)).len(), 1);
    sink.set_behaviour(Behaviour::ok());
    assert_eq!(post(&sink.url(), "{}").unwrap().status, 200);
}

#[test]
fn sink_custom_closure_and_keep_alive_and_chunked() {
    let sink = HttpSink::start(Behaviour::custom(|req| {
        if req.path.contains("bad") {
            Reply::status(400).with_body("no")
        } else {
            Reply::status(202)
                .with_header("x-seen", &req.index.to_string())
                .with_body(req.body.clone())
        }
    }));
    assert_eq!(post(&sink.url(), "x").unwrap().status, 202);
    let bad = http::request("POST", &format!("{}/bad", sink.url()), &[], b"1").unwrap();
    assert_eq!((bad.status, bad.text().as_str()), (400, "no"));

    // Two requests on one keep-alive connection, the second one chunked.
    let mut s = TcpStream::connect(sink.addr()).unwrap();
    s.write_all(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    s.write_all(b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(out.matches("HTTP/1.1 202").count(), 2, "{out}");
    assert!(out.ends_with("hello"), "{out}");
    let reqs = sink.wait_for_requests(4, Duration::from_secs(5));
    assert_eq!(reqs[2].connection, reqs[3].connection);
    assert_eq!(reqs[3].body, b"hello");
    assert!(reqs[3].received_at >= reqs[2].received_at);
}

#[test]
fn sink_drop_is_prompt_even_with_delayed_requests() {
    let sink = HttpSink::start(Behaviour::delay(Duration::from_secs(60)));
    let url = sink.url();
    let client = std::thread::spawn(move || post(&url, "{}"));
    sink.wait_for_requests(1, Duration::from_secs(5));
    let t = Instant::now();
    drop(sink);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "drop took {:?}",
        t.elapsed()
    );
    assert!(client.join().unwrap().is_err());
}

#[test]
#[should_panic(expected = "got 0 of 1 requests")]
fn sink_wait_times_out_clearly() {
    let sink = HttpSink::start(Behaviour::ok());
    sink.wait_for_requests(1, Duration::from_millis(100));
}

#[test]
fn parquet_dump_and_duckdb_read_a_pyarrow_file() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("ledgers.parquet");
    let script = r#"
import sys, pyarrow as pa, pyarrow.parquet as pq
t = pa.table({
    "sequence": pa.array([7, 8, None], pa.uint32()),
    "hash": pa.array([bytes([0xab]) * 32, bytes(32), None], pa.binary(32)),
    "closed_at": pa.array([1700000000123, 0, None], pa.timestamp("ms", tz="UTC")),
    "network": pa.array(["pubnet", "testnet", None], pa.string()),
})
schema = t.schema.set(0, pa.field("sequence", pa.uint32(), nullable=False))
t = pa.table({"sequence": pa.array([7, 8, 9], pa.uint32()), "hash": t["hash"],
              "closed_at": t["closed_at"], "network": t["network"]}, schema=schema)
pq.write_table(t, sys.argv[1], compression="zstd", row_group_size=2)
"#;
    let st = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&file)
        .status()
        .unwrap();
    assert!(st.success());

    let d = parquet_dump(&file);
    assert_eq!(d["num_rows"], 3);
    assert_eq!(d["num_row_groups"], 2);
    assert_eq!(d["compression"], "ZSTD");
    assert_eq!(d["arrow_schema"][0]["name"], "sequence");
    assert_eq!(d["arrow_schema"][0]["nullable"], false);
    assert_eq!(d["arrow_schema"][1]["type"], "fixed_size_binary[32]");
    assert_eq!(d["arrow_schema"][2]["type"], "timestamp[ms, tz=UTC]");
    assert_eq!(d["columns"][0]["physical_type"], "INT32");
    assert_eq!(d["columns"][0]["logical_type"]["Type"], "Int");
    assert_eq!(d["columns"][1]["physical_type"], "FIXED_LEN_BYTE_ARRAY");
    assert_eq!(d["columns"][2]["logical_type"]["timeUnit"], "milliseconds");
    assert_eq!(d["columns"][3]["logical_type"]["Type"], "String");
    assert_eq!(d["values"]["sequence"], serde_json::json!([7, 8, 9]));
    assert_eq!(d["values"]["hash"][0], "ab".repeat(32));
    assert_eq!(d["values"]["hash"][2], serde_json::Value::Null);
    assert_eq!(
        d["values"]["closed_at"],
        serde_json::json!([1700000000123i64, 0, null])
    );
    assert_eq!(
        d["values"]["network"],
        serde_json::json!(["pubnet", "testnet", null])
    );

    let q = duckdb_query(
        &format!("{}/*.parquet", dir.path().display()),
        "select sequence, hash, closed_at, network from t where sequence < 9 order by sequence",
    );
    assert_eq!(
        q["columns"],
        serde_json::json!(["sequence", "hash", "closed_at", "network"])
    );
    assert_eq!(
        q["rows"][0],
        serde_json::json!([7, "ab".repeat(32), 1700000000123i64, "pubnet"])
    );
    assert_eq!(
        q["rows"][1],
        serde_json::json!([8, "00".repeat(32), 0, "testnet"])
    );
}

/// Run by `servers_die_with_a_killed_test_process` in a child test process, which it then kills.
#[test]
#[ignore = "helper: run by servers_die_with_a_killed_test_process"]
fn hold_servers_until_killed() {
    if std::env::var_os("BRONZE_TESTKIT_HOLD").is_none() {
        return;
    }
    let s3 = MotoS3::start();
    let gcs = GcsProxy::start(&s3);
    let pg = Postgres::start();
    println!("PORTS {} {} {}", s3.port(), gcs.port(), pg.port());
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn servers_die_with_a_killed_test_process() {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hold_servers_until_killed",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BRONZE_TESTKIT_HOLD", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut ports = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // libtest may print "test NAME ... " on the same line first.
        if let Some(i) = line.find("PORTS ") {
            ports = line[i + 6..]
                .split_whitespace()
                .map(|p| p.parse::<u16>().unwrap())
                .collect();
            break;
        }
    }
    assert_eq!(ports.len(), 3, "the helper test did not report its ports");
    for p in &ports {
        assert!(
            TcpStream::connect(("127.0.0.1", *p)).is_ok(),
            "port {p} not up"
        );
    }
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let alive: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still listening after the test process died: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn s3dir_serves_files_with_the_added_delay() {
    let dir = TempDir::new().unwrap();
    std::fs::create_dir_all(dir.path().join("FFFFFFFF--0-63999")).unwrap();
    std::fs::write(
        dir.path().join("FFFFFFFF--0-63999/FFFFFFFD--2.xdr.zst"),
        b"ledger",
    )
    .unwrap();
    let server = S3Dir::start(dir.path(), Duration::from_millis(50));
    let url = |key: &str| format!("{}/any-bucket/{key}", server.endpoint());

    let started = Instant::now();
    let found = http::request(
        "GET",
        &url("FFFFFFFF--0-63999/FFFFFFFD--2.xdr.zst"),
        &[],
        b"",
    )
    .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "the delay is added"
    );
    assert_eq!(found.status, 200);
    assert_eq!(found.body, b"ledger");
    assert!(found.header("etag").is_some() && found.header("last-modified").is_some());
    // Encoded keys are decoded, as S3 does.
    let encoded = http::request(
        "GET",
        &url("FFFFFFFF--0-63999%2FFFFFFFFD--2.xdr.zst"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(encoded.body, b"ledger");

    assert_eq!(
        http::request("GET", &url("nope.xdr.zst"), &[], b"")
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        http::request("GET", &url("../etc/passwd"), &[], b"")
            .unwrap()
            .status,
        400
    );
    assert_eq!(
        http::request("PUT", &url("new"), &[], b"x").unwrap().status,
        501
    );
    assert_eq!(server.requests(), 5);
}
