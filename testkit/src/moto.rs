//! moto's S3 server on loopback.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::http::{self, HttpResponse, encode_path, encode_query};
use crate::process::{ServerProcess, StartError};

const ACCESS_KEY: &str = "testing";
const SECRET_KEY: &str = "testing";
const REGION: &str = "us-east-1";
/// moto checks bucket ACLs for anonymous requests (an unsigned GET of a private object is a 403),
/// but never verifies signatures: any SigV4-shaped `Authorization` header makes a request
/// authenticated as the dummy key.
const DUMMY_AUTH: &str = "AWS4-HMAC-SHA256 Credential=testing/20200101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

/// A fresh `moto_server` (S3 API) on `127.0.0.1:<free port>`, killed (process group) on Drop.
///
/// Client settings (object_store): endpoint [`MotoS3::endpoint`], `allow_http`, region
/// `us-east-1`, the dummy keys, path-style requests (virtual-hosted style off). moto keeps
/// everything in memory: isolate tests with their own bucket or [`MotoS3::reset`].
pub struct MotoS3 {
    process: ServerProcess,
    port: u16,
    _dir: TempDir,
}

impl MotoS3 {
    /// Start moto from the test venv (see [`crate::python`]) and wait until it answers.
    /// Panics with moto's log when it does not start within 60 s (3 tries on new ports if it dies).
    pub fn start() -> MotoS3 {
        let moto = moto_server_bin();
        let mut failures = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("bronze-moto-")
                .tempdir()
                .unwrap_or_else(|e| {
                    panic!("bronze-testkit: cannot create a temp dir for moto: {e}")
                });
            let port = crate::free_port();
            let mut cmd = Command::new(&moto);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("PYTHONUNBUFFERED", "1")
                .env("PYTHONDONTWRITEBYTECODE", "1");
            let mut process =
                ServerProcess::spawn("moto_server", cmd, &dir.path().join("moto.log"), dir.path());
            let url = format!("http://127.0.0.1:{port}/");
            let ready = process.wait_ready(Duration::from_secs(60), || {
                http::request("GET", &url, &[("Authorization", DUMMY_AUTH)], b"")
                    .map(|r| r.status == 200)
                    .map_err(|e| format!("GET {url}: {e}"))
            });
            match ready {
                Ok(_) => {
                    return MotoS3 {
                        process,
                        port,
                        _dir: dir,
                    };
                }
                Err(StartError {
                    exited: true,
                    message,
                }) => failures.push(message),
                Err(StartError { message, .. }) => {
                    panic!("bronze-testkit: moto_server did not start: {message}")
                }
            }
        }
        panic!(
            "bronze-testkit: moto_server did not start in 3 tries:\n{}",
            failures.join("\n\n")
        );
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Always `us-east-1`.
    pub fn region(&self) -> &'static str {
        REGION
    }

    /// Dummy access key id (moto accepts anything).
    pub fn access_key(&self) -> &'static str {
        ACCESS_KEY
    }

    /// Dummy secret key.
    pub fn secret_key(&self) -> &'static str {
        SECRET_KEY
    }

    /// The environment a child process (e.g. the Bronze binary) needs to reach this moto and
    /// nothing else. Apply it on top of a cleared or controlled environment.
    ///
    /// * `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`: the dummy keys, so no credential chain runs.
    /// * `AWS_REGION`, `AWS_DEFAULT_REGION`: `us-east-1`.
    /// * `AWS_ENDPOINT_URL` (AWS SDKs, object_store), `AWS_ENDPOINT` (object_store's older name):
    ///   this server.
    /// * `AWS_ALLOW_HTTP=true` (object_store: plain http), `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false`
    ///   (path-style URLs).
    /// * `AWS_EC2_METADATA_DISABLED=true`: never ask 169.254.169.254 for credentials.
    /// * `AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE` = `/dev/null`: ignore `~/.aws`.
    pub fn env(&self) -> Vec<(String, String)> {
        let endpoint = self.endpoint();
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ENDPOINT", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Raw request to moto: `path_and_query` starts with `/` (path-style: `/bucket/key?...`).
    /// Adds the dummy `Authorization` header (unless given) and `Content-Type:
    /// application/octet-stream` for bodies (unless given; moto's Flask would otherwise parse a
    /// form-encoded body away).
    pub fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        if !has("authorization") {
            all.push(("Authorization", DUMMY_AUTH));
        }
        if !body.is_empty() && !has("content-type") {
            all.push(("Content-Type", "application/octet-stream"));
        }
        let url = format!("{}{path_and_query}", self.endpoint());
        http::request(method, &url, &all, body).unwrap_or_else(|e| {
            panic!(
                "bronze-testkit: {method} {url} to moto failed: {e}\n{}",
                self.process.log_tail()
            )
        })
    }

    /// Create a bucket (S3 bucket naming rules apply: 3-63 lowercase letters, digits, dashes).
    pub fn create_bucket(&self, name: &str) {
        let r = self.request("PUT", &format!("/{}", encode_path(name)), &[], b"");
        check(&r, &format!("create bucket {name}"));
    }

    /// Put an object (overwrites).
    pub fn put_object(&self, bucket: &str, key: &str, body: impl AsRef<[u8]>) {
        let r = self.request("PUT", &object_path(bucket, key), &[], body.as_ref());
        check(&r, &format!("put s3://{bucket}/{key}"));
    }

    /// Get an object's bytes; `None` when it does not exist.
    pub fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let r = self.request("GET", &object_path(bucket, key), &[], b"");
        if r.status == 404 {
            return None;
        }
        check(&r, &format!("get s3://{bucket}/{key}"));
        Some(r.body)
    }

    /// Delete an object (no error when it does not exist).
    pub fn delete_object(&self, bucket: &str, key: &str) {
        let r = self.request("DELETE", &object_path(bucket, key), &[], b"");
        check(&r, &format!("delete s3://{bucket}/{key}"));
    }

    /// All keys under `prefix` (`""` for all), sorted, following pagination.
    pub fn list_objects(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = format!(
                "/{}?list-type=2&prefix={}",
                encode_path(bucket),
                encode_query(prefix)
            );
            if let Some(t) = &token {
                q.push_str(&format!("&continuation-token={}", encode_query(t)));
            }
            let r = self.request("GET", &q, &[], b"");
            check(&r, &format!("list s3://{bucket}/{prefix}"));
            let xml = r.text();
            keys.extend(xml_values(&xml, "Key"));
            let truncated = xml_values(&xml, "IsTruncated")
                .first()
                .is_some_and(|v| v == "true");
            token = xml_values(&xml, "NextContinuationToken").into_iter().next();
            if !truncated || token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// Forget all buckets and objects (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let r = self.request("POST", "/moto-api/reset", &[], b"");
        check(&r, "moto reset");
    }

    /// The last lines of moto's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

fn object_path(bucket: &str, key: &str) -> String {
    format!("/{}/{}", encode_path(bucket), encode_path(key))
}

fn check(r: &HttpResponse, what: &str) {
    if !r.is_success() {
        panic!(
            "bronze-testkit: moto: {what}: HTTP {}\n{}",
            r.status,
            r.text()
        );
    }
}

fn moto_server_bin() -> PathBuf {
    let python = crate::python();
    let bin = python.with_file_name("moto_server");
    if !bin.exists() {
        panic!(
            "bronze-testkit: {} not found next to the venv python: run `make test-deps`",
            bin.display()
        );
    }
    bin
}

/// Text of every `<tag>...</tag>` element, XML entities decoded. Enough for S3 list results.
pub(crate) fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(xml_unescape(&after[..j]));
        rest = &after[j + close.len()..];
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}
