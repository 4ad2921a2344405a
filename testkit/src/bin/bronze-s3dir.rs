//! `bronze-s3dir ROOT [DELAY_MS]`: serves ROOT as a read-only S3 endpoint on 127.0.0.1 (a free
//! port), adding DELAY_MS (default 0) to every request; prints `endpoint http://127.0.0.1:PORT`
//! and serves until killed. The cloud-latency benchmark's store (`scripts/bench-cloud.sh`).

use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let root = args.next().expect("usage: bronze-s3dir ROOT [DELAY_MS]");
    let delay: u64 = args.next().map_or(0, |d| d.parse().expect("DELAY_MS"));
    let server = bronze_testkit::S3Dir::start(root, Duration::from_millis(delay));
    println!("endpoint {}", server.endpoint());
    loop {
        std::thread::park();
    }
}
