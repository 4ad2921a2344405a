//! Debian's nginx translating the GCS XML API to S3, in front of a [`MotoS3`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::MotoS3;
use crate::http::{self, HttpResponse};
use crate::process::{ServerProcess, StartError, port_open};

/// The proxy's nginx configuration (copied from shared/testinfra; see its header).
pub const NGINX_TEMPLATE: &str = include_str!("../gcs-on-s3.nginx.conf.template");

/// A fresh nginx on `127.0.0.1:<free port>` that makes the moto it was started with look like
/// GCS's XML API to object_store's `GoogleCloudStorage` client. Buckets are moto's buckets
/// (create them with [`MotoS3::create_bucket`]). Killed (process group) on Drop.
///
/// `x-goog-if-generation-match: 0` becomes `If-None-Match: *` (create-only puts), a non-zero
/// generation becomes `If-Match`, and the S3 ETag is handed back as `x-goog-generation`. Object
/// names are passed decoded (object_store sends `/` as `%2F`; GCS decodes it), so a datastore
/// uploaded with plain keys through [`MotoS3`] reads the same through the proxy.
/// Known gap: object_store's `copy_if_not_exists` does not work through it.
///
/// The proxy must not outlive the [`MotoS3`] behind it (declare it after the moto handle so it
/// drops first); it only holds moto's port.
pub struct GcsProxy {
    process: ServerProcess,
    port: u16,
    dir: TempDir,
}

impl GcsProxy {
    /// Start nginx with the template in front of `s3`. Panics with nginx's logs on failure.
    pub fn start(s3: &MotoS3) -> GcsProxy {
        let nginx = nginx_bin();
        let mut failures = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("bronze-gcs-")
                .tempdir()
                .unwrap_or_else(|e| {
                    panic!("bronze-testkit: cannot create a temp dir for nginx: {e}")
                });
            // nginx's worker runs as `nobody` when started as root; it must reach its temp dirs.
            set_mode(dir.path(), 0o755);
            let port = crate::free_port();
            let conf = NGINX_TEMPLATE
                .replace("@RUNDIR@", &dir.path().display().to_string())
                .replace("@GCS_PORT@", &port.to_string())
                .replace("@S3_PORT@", &s3.port().to_string());
            let conf_path = dir.path().join("nginx.conf");
            std::fs::write(&conf_path, conf).unwrap_or_else(|e| {
                panic!("bronze-testkit: cannot write {}: {e}", conf_path.display())
            });
            let startup_log = dir.path().join("startup-error.log");
            let mut cmd = Command::new(&nginx);
            cmd.arg("-c").arg(&conf_path).arg("-e").arg(&startup_log);
            let mut process = ServerProcess::spawn(
                "nginx (GCS proxy)",
                cmd,
                &dir.path().join("nginx.out"),
                dir.path(),
            );
            process.add_log(&startup_log);
            process.add_log(&dir.path().join("error.log"));
            match process.wait_ready(Duration::from_secs(20), || port_open(port)) {
                Ok(_) => return GcsProxy { process, port, dir },
                Err(StartError {
                    exited: true,
                    message,
                }) => failures.push(message),
                Err(StartError { message, .. }) => {
                    panic!("bronze-testkit: nginx did not start: {message}")
                }
            }
        }
        panic!(
            "bronze-testkit: nginx (GCS proxy) did not start in 3 tries:\n{}",
            failures.join("\n\n")
        );
    }

    /// `http://127.0.0.1:PORT`: the GCS base URL for clients (`gcs_base_url`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Write a service-account JSON pointing object_store's GCS client at this proxy with OAuth
    /// disabled, as `DIR/gcs-service-account.json`, and return its path. Use it as
    /// `GOOGLE_SERVICE_ACCOUNT` / `with_service_account_path`, and keep `allow_http` on.
    pub fn service_account_json(&self, dir: &Path) -> PathBuf {
        let json = serde_json::json!({
            "gcs_base_url": self.base_url(),
            "disable_oauth": true,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        });
        let path = dir.join("gcs-service-account.json");
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&json).expect("serialize JSON"),
        )
        .unwrap_or_else(|e| panic!("bronze-testkit: cannot write {}: {e}", path.display()));
        path
    }

    /// Raw request through the proxy, e.g. `("PUT", "/bucket/key", [("x-goog-if-generation-match",
    /// "0")], body)`. Nothing is added besides `Host`/`Content-Length`.
    pub fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let url = format!("{}{path_and_query}", self.base_url());
        http::request(method, &url, headers, body).unwrap_or_else(|e| {
            panic!(
                "bronze-testkit: {method} {url} through the GCS proxy failed: {e}\n{}",
                self.process.log_tail()
            )
        })
    }

    /// The last lines of nginx's logs.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// nginx's run directory (config, logs, temp dirs).
    pub fn run_dir(&self) -> &Path {
        self.dir.path()
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("bronze-testkit: chmod {mode:o} {}: {e}", path.display()));
}

fn nginx_bin() -> PathBuf {
    for candidate in ["/usr/sbin/nginx", "/usr/local/sbin/nginx"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if d.join("nginx").is_file() {
                return d.join("nginx");
            }
        }
    }
    panic!(
        "bronze-testkit: nginx not found (/usr/sbin/nginx or PATH): run `make test-deps` (Debian package nginx-core)"
    );
}
