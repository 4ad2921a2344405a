//! `bronze-s3dir ROOT [DELAY_MS] [FAULTS]`: serves ROOT as a read-only S3 endpoint on 127.0.0.1 (a
//! free port), adding DELAY_MS (default 0) to every request and injecting FAULTS (`none`, the
//! default; `cloud`: 5% 503/500, 1% resets, one 10 s stall in 2,000 requests; or
//! `seed=N,errors=F,resets=F,stalls=F,stall_ms=N`); prints `endpoint http://127.0.0.1:PORT`, then a
//! `faults ...` line whenever the injected counts changed (at most once a second), and serves until
//! killed. The cloud benchmarks' store (`scripts/bench-cloud.sh`).

use std::time::Duration;

use bronze_testkit::Faults;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bronze-s3dir ROOT [DELAY_MS] [FAULTS]";
    let root = args.next().expect(usage);
    let delay: u64 = args.next().map_or(0, |d| d.parse().expect("DELAY_MS"));
    let faults = Faults::parse(&args.next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{usage}: FAULTS: {e}"));
    let server =
        bronze_testkit::S3Dir::start_with_faults(root, Duration::from_millis(delay), faults);
    println!("endpoint {}", server.endpoint());
    let mut last = Default::default();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = server.faults();
        if now != last {
            println!(
                "faults requests={} slowdown_503={} internal_error_500={} resets={} stalls={}",
                server.requests(),
                now.slow_down,
                now.internal_error,
                now.resets,
                now.stalls
            );
            last = now;
        }
    }
}
