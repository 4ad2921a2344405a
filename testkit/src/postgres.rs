//! A throwaway PostgreSQL cluster on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::unistd::{Uid, User};
use tempfile::TempDir;

use crate::process::{
    kill_watchdog, run_checked, shell_quote, spawn_watchdog, tail_of_file, tail_of_text,
};

/// A fresh PostgreSQL cluster: `initdb` into a temp dir, `pg_ctl start` on
/// `127.0.0.1:<free port>` (unix socket in the temp dir, `fsync=off`, trust auth, superuser
/// `postgres`), stopped with `pg_ctl -m immediate stop` on Drop and the directory removed.
///
/// PostgreSQL refuses to run as root: when the tests run as root the server programs run as the
/// `postgres` user (via `runuser`) and the temp dir is given to it; otherwise they run as the
/// current user. Server binaries come from `$BRONZE_TEST_PG_BIN` or the newest
/// `/usr/lib/postgresql/*/bin`.
/// How to start a [`Postgres`]: [`Postgres::start`] is the default (no TLS, trust auth).
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// `ssl = on` with this certificate and key.
    pub tls: Option<crate::ServerCert>,
    /// Accept TCP connections over TLS only (`pg_hba.conf`: `hostssl`, no `host`).
    pub tls_only: bool,
}

pub struct Postgres {
    dir: Option<TempDir>,
    port: u16,
    bin: PathBuf,
    run_as: Option<String>,
    postmaster_pid: Option<i32>,
    watchdog: Option<Child>,
}

impl Postgres {
    /// Create and start the cluster. Panics with initdb's or the server's log on failure.
    pub fn start() -> Postgres {
        Postgres::start_with(&PgOptions::default())
    }

    /// [`Postgres::start`] with `options` (TLS).
    pub fn start_with(options: &PgOptions) -> Postgres {
        let bin = pg_bin_dir();
        let run_as = if Uid::effective().is_root() {
            Some("postgres".to_string())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("bronze-pg-")
            .tempdir()
            .unwrap_or_else(|e| {
                panic!("bronze-testkit: cannot create a temp dir for PostgreSQL: {e}")
            });
        if let Some(user) = &run_as {
            let u = User::from_name(user)
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("bronze-testkit: no `{user}` user to run PostgreSQL as (Debian's postgresql package creates it): run `make test-deps`"));
            std::os::unix::fs::chown(dir.path(), Some(u.uid.as_raw()), Some(u.gid.as_raw()))
                .unwrap_or_else(|e| {
                    panic!(
                        "bronze-testkit: chown {} to {user}: {e}",
                        dir.path().display()
                    )
                });
        }
        let data = dir.path().join("data");
        let mut pg = Postgres {
            dir: Some(dir),
            port: 0,
            bin,
            run_as,
            postmaster_pid: None,
            watchdog: None,
        };
        let mut initdb = pg.server_cmd("initdb");
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "-N",
        ]);
        run_checked("initdb", &mut initdb);
        pg.configure(&data, options);

        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = crate::free_port();
            let log = pg.dir().join(format!("pg-{port}.log"));
            let mut start = pg.server_cmd("pg_ctl");
            start
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o"])
                .arg(format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                    pg.dir().display()
                ))
                .arg("start");
            let out = start
                .output()
                .unwrap_or_else(|e| panic!("bronze-testkit: cannot run pg_ctl ({start:?}): {e}"));
            if out.status.success() {
                pg.port = port;
                pg.postmaster_pid = read_postmaster_pid(&data);
                if let Some(pid) = pg.postmaster_pid {
                    // Immediate shutdown, up to 5 s for it, then the hard way; then remove the dir.
                    pg.watchdog = spawn_watchdog(&format!(
                        "kill -QUIT {pid} 2>/dev/null; i=0; while kill -0 {pid} 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; kill -KILL {pid} 2>/dev/null; rm -rf {}",
                        shell_quote(pg.dir())
                    ));
                }
                return pg;
            }
            failures.push(format!(
                "pg_ctl start on port {port} failed with {}:\n{}\n{}\n--- last lines of {} ---\n{}",
                out.status,
                tail_of_text(&String::from_utf8_lossy(&out.stdout), 20),
                tail_of_text(&String::from_utf8_lossy(&out.stderr), 20),
                log.display(),
                tail_of_file(&log, 40)
            ));
            // A half-started server would hold the data dir; make sure it is gone before retrying.
            pg.stop_server();
        }
        panic!(
            "bronze-testkit: PostgreSQL did not start in 3 tries:\n{}",
            failures.join("\n\n")
        );
    }

    /// TLS settings in `postgresql.conf` and `pg_hba.conf`, before the first start.
    fn configure(&self, data: &Path, options: &PgOptions) {
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text)
                .unwrap_or_else(|e| panic!("bronze-testkit: write {}: {e}", path.display()))
        };
        if let Some(tls) = &options.tls {
            // The server checks that it owns its key and nobody else can read it.
            for (from, to) in [(&tls.cert, "server.crt"), (&tls.key, "server.key")] {
                let target = data.join(to);
                std::fs::copy(from, &target).unwrap_or_else(|e| {
                    panic!(
                        "bronze-testkit: copy {} to {}: {e}",
                        from.display(),
                        target.display()
                    )
                });
                std::fs::set_permissions(
                    &target,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .unwrap_or_else(|e| panic!("bronze-testkit: chmod {}: {e}", target.display()));
                if let Some(user) = &self.run_as
                    && let Ok(Some(u)) = User::from_name(user)
                {
                    std::os::unix::fs::chown(&target, Some(u.uid.as_raw()), Some(u.gid.as_raw()))
                        .unwrap_or_else(|e| {
                            panic!("bronze-testkit: chown {}: {e}", target.display())
                        });
                }
            }
            let conf = data.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).unwrap_or_default();
            text.push_str(
                "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            );
            write(&conf, &text);
        }
        if options.tls_only {
            write(
                &data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            );
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn dsn(&self) -> String {
        self.dsn_for("postgres")
    }

    /// DSN of another database in this cluster.
    pub fn dsn_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Run SQL with `psql` in database `postgres` and return its unaligned, tuples-only output
    /// (columns separated by `|`, rows by newlines, trailing newline trimmed). Panics with psql's
    /// stderr when a statement fails (`ON_ERROR_STOP`).
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// [`Postgres::psql`] in another database.
    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        let psql = self.psql_bin();
        let mut cmd = Command::new(&psql);
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .arg("-d")
        .arg(database)
        .arg("-c")
        .arg(sql)
        .env("PGCONNECT_TIMEOUT", "10");
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("bronze-testkit: cannot run {}: {e}", psql.display()));
        if !out.status.success() {
            panic!(
                "bronze-testkit: psql failed ({}) running:\n{sql}\n--- stderr ---\n{}\n--- server log ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_string()
    }

    /// `CREATE DATABASE name` and return its DSN.
    pub fn create_database(&self, name: &str) -> String {
        self.psql(&format!(
            "CREATE DATABASE \"{}\"",
            name.replace('"', "\"\"")
        ));
        self.dsn_for(name)
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        let log = self.dir().join(format!("pg-{}.log", self.port));
        format!(
            "--- last lines of {} ---\n{}",
            log.display(),
            tail_of_file(&log, 40)
        )
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("temp dir lives until drop").path()
    }

    fn psql_bin(&self) -> PathBuf {
        let p = self.bin.join("psql");
        if p.exists() { p } else { PathBuf::from("psql") }
    }

    /// A server program from the bin dir, run as the `postgres` user when we are root.
    fn server_cmd(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn stop_server(&mut self) {
        let data = self.dir().join("data");
        if data.join("postmaster.pid").exists() {
            let _ = self
                .server_cmd("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "-t", "20", "stop"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        if let Some(pid) = self.postmaster_pid.take() {
            // pg_ctl normally got it; this is for a wedged server. ESRCH is fine.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_server();
        kill_watchdog(self.watchdog.take());
        // Dropping the TempDir removes the cluster (we are root or its owner).
        self.dir.take();
    }
}

fn read_postmaster_pid(data: &Path) -> Option<i32> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn pg_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BRONZE_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok();
            let bin = e.path().join("bin");
            if let Some(v) = version
                && bin.join("initdb").exists()
                && bin.join("pg_ctl").exists()
                && best.as_ref().is_none_or(|(b, _)| v > *b)
            {
                best = Some((v, bin));
            }
        }
    }
    best.map(|(_, b)| b).unwrap_or_else(|| {
        panic!(
            "bronze-testkit: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (initdb, pg_ctl): \
             run `make test-deps` (Debian package postgresql) or set BRONZE_TEST_PG_BIN"
        )
    })
}
