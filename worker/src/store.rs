//! Builds object stores for the source datastore and the output, from the config alone.
//!
//! Credentials come from well-known environment variables only (`AWS_ACCESS_KEY_ID`, …,
//! `GOOGLE_APPLICATION_CREDENTIALS`). A client is never built with `from_env()`, so no stray
//! variable can redirect it; with no credentials at all a cloud client falls back to the
//! platform's workload identity, which is what production on GKE/EKS wants and what tests never
//! trigger (they always pass an explicit endpoint and dummy keys).

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::config::PerfConfig;

/// A store and the key prefix everything lives under.
#[derive(Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub root: ObjectPath,
    /// Human-readable URI of `root`, for logs, manifests and the catalog (`gs://b/p`, `file:///d`).
    pub uri: String,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location").field("uri", &self.uri).finish()
    }
}

impl Location {
    /// The key for `relative` under the root.
    pub fn key(&self, relative: &str) -> ObjectPath {
        let mut parts: Vec<&str> = self
            .root
            .as_ref()
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        parts.extend(relative.split('/').filter(|s| !s.is_empty()));
        ObjectPath::from(parts.join("/"))
    }

    /// The URI of `relative` under the root.
    pub fn uri_of(&self, relative: &str) -> String {
        format!(
            "{}/{}",
            self.uri.trim_end_matches('/'),
            relative.trim_start_matches('/')
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{field}: cannot open {what}: {source}")]
    Build {
        field: &'static str,
        what: String,
        source: object_store::Error,
    },
    #[error(
        "{field}: no credentials for {what}: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are unset and AWS_EC2_METADATA_DISABLED=true forbids the instance metadata service"
    )]
    NoCredentials { field: &'static str, what: String },
    #[error("{field}: cannot create directory {path}: {source}")]
    CreateDir {
        field: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// Object store request retries for the output, from `perf.retry_attempts` /
/// `perf.retry_backoff_ms`.
pub fn retry_config(perf: &PerfConfig) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(perf.retry_backoff_ms.max(1)),
            max_backoff: Duration::from_secs(30),
            base: 2.0,
        },
        max_retries: perf.retry_attempts.saturating_sub(1) as usize,
        retry_timeout: Duration::from_secs(180),
    }
}

/// No retries inside object_store: for the source, whose reader retries each request itself
/// (`source/read_policy.rs`: shorter waits, hedged slow GETs, and every retry logged and counted
/// by cause, which object_store's internal retries are not).
pub fn no_retries() -> RetryConfig {
    RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    }
}

/// A local directory (created if missing) as a store.
pub fn local(field: &'static str, dir: &str, create: bool) -> Result<Location, StoreError> {
    if create {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            field,
            path: dir.to_string(),
            source,
        })?;
    }
    let canonical = std::fs::canonicalize(dir).map_err(|source| StoreError::CreateDir {
        field,
        path: dir.to_string(),
        source,
    })?;
    let store = LocalFileSystem::new_with_prefix(&canonical)
        .map_err(|source| StoreError::Build {
            field,
            what: dir.to_string(),
            source,
        })?
        .with_automatic_cleanup(true);
    Ok(Location {
        store: Arc::new(store),
        root: ObjectPath::default(),
        uri: format!("file://{}", canonical.display()),
    })
}

/// An S3 or S3-compatible bucket (B2, R2, MinIO with `endpoint`).
pub fn s3(
    field: &'static str,
    bucket: &str,
    prefix: &str,
    endpoint: &str,
    region: &str,
    retry: RetryConfig,
) -> Result<Location, StoreError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let region = Some(region.to_string())
        .filter(|r| !r.is_empty())
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(region)
        .with_retry(retry)
        .with_client_options(client_options());
    if !endpoint.is_empty() {
        // Custom endpoints (MinIO, B2, R2, moto) want path-style requests.
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    match s3_credentials(&env) {
        S3Credentials::Keys { id, secret, token } => {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            if let Some(token) = token {
                builder = builder.with_token(token);
            }
        }
        S3Credentials::Ambient => {}
        S3Credentials::None => {
            return Err(StoreError::NoCredentials {
                field,
                what: format!("s3://{bucket}"),
            });
        }
    }
    let store = builder.build().map_err(|source| StoreError::Build {
        field,
        what: format!("s3://{bucket}"),
        source,
    })?;
    let root = ObjectPath::from(prefix.trim_matches('/'));
    Ok(Location {
        store: Arc::new(store),
        uri: bucket_uri("s3", bucket, &root),
        root,
    })
}

/// Where an S3 client gets its credentials.
#[derive(Debug, PartialEq, Eq)]
enum S3Credentials {
    /// `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`).
    Keys {
        id: String,
        secret: String,
        token: Option<String>,
    },
    /// object_store's own chain: web identity, container credentials, instance metadata.
    Ambient,
    /// No keys, and `AWS_EC2_METADATA_DISABLED=true` forbids the instance metadata service
    /// (169.254.169.254): refuse instead of letting the client reach for it.
    None,
}

fn s3_credentials(env: &dyn Fn(&str) -> Option<String>) -> S3Credentials {
    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => S3Credentials::Keys {
            id,
            secret,
            token: env("AWS_SESSION_TOKEN"),
        },
        _ if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) => {
            S3Credentials::None
        }
        _ => S3Credentials::Ambient,
    }
}

/// A GCS bucket. `GOOGLE_APPLICATION_CREDENTIALS` may name a service-account key file (it may
/// carry `gcs_base_url` and `disable_oauth` for emulators) or an authorized-user file.
pub fn gcs(
    field: &'static str,
    bucket: &str,
    prefix: &str,
    retry: RetryConfig,
) -> Result<Location, StoreError> {
    let credentials = std::env::var("GOOGLE_APPLICATION_CREDENTIALS")
        .ok()
        .filter(|v| !v.is_empty());
    let key_file = credentials.as_deref().and_then(read_json);
    // An emulator named by the key file's `gcs_base_url` may be plain http.
    let plain_http = key_file
        .as_ref()
        .and_then(|v| {
            v.get("gcs_base_url")?
                .as_str()
                .map(|u| u.starts_with("http://"))
        })
        .unwrap_or(false);
    let mut builder = GoogleCloudStorageBuilder::new()
        .with_bucket_name(bucket)
        .with_retry(retry)
        .with_client_options(client_options().with_allow_http(plain_http));
    if let Some(path) = credentials {
        let is_service_account = key_file.as_ref().is_some_and(|v| {
            v.get("type").and_then(|t| t.as_str()) == Some("service_account")
                || v.get("private_key").is_some()
        });
        builder = if is_service_account {
            builder.with_service_account_path(path)
        } else {
            builder.with_application_credentials(path)
        };
    }
    let store = builder.build().map_err(|source| StoreError::Build {
        field,
        what: format!("gs://{bucket}"),
        source,
    })?;
    let root = ObjectPath::from(prefix.trim_matches('/'));
    Ok(Location {
        store: Arc::new(store),
        uri: bucket_uri("gs", bucket, &root),
        root,
    })
}

/// Splits `bucket/prefix` (the runbook's `datastore_path`).
pub fn split_bucket_path(path: &str) -> (&str, &str) {
    let path = path.trim_matches('/');
    path.split_once('/').unwrap_or((path, ""))
}

fn bucket_uri(scheme: &str, bucket: &str, root: &ObjectPath) -> String {
    if root.as_ref().is_empty() {
        format!("{scheme}://{bucket}")
    } else {
        format!("{scheme}://{bucket}/{root}")
    }
}

/// How long a connection may stay silent (no headers, no body bytes) before the request fails
/// and is retried: a dead connection that was never reset. Per read, so a large object that
/// keeps arriving, however slowly, is never cut; a source GET that merely stalls is raced by a
/// hedged one much sooner (`source/read_policy.rs`).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

fn client_options() -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(10))
        .with_read_timeout(READ_TIMEOUT)
        .with_timeout(Duration::from_secs(120))
}

fn read_json(path: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

#[cfg(test)]
mod tests {

    #[test]
    fn s3_keys_come_from_the_environment_and_metadata_is_never_a_silent_fallback() {
        let env_of = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            s3_credentials(&env_of(&[
                ("AWS_ACCESS_KEY_ID", "id"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ])),
            S3Credentials::Keys {
                id: "id".into(),
                secret: "secret".into(),
                token: None
            }
        );
        assert_eq!(
            s3_credentials(&env_of(&[("AWS_EC2_METADATA_DISABLED", "true")])),
            S3Credentials::None
        );
        assert_eq!(
            s3_credentials(&env_of(&[("AWS_ACCESS_KEY_ID", "id")])),
            S3Credentials::Ambient
        );
    }
    use super::*;

    #[test]
    fn datastore_path_splits_into_bucket_and_prefix() {
        assert_eq!(
            split_bucket_path("bucket/landing/ledgers/testnet"),
            ("bucket", "landing/ledgers/testnet")
        );
        assert_eq!(split_bucket_path("bucket"), ("bucket", ""));
        assert_eq!(split_bucket_path("bucket/p/"), ("bucket", "p"));
    }

    #[test]
    fn keys_join_root_and_relative_without_empty_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut loc = local("storage.local_dir", dir.path().to_str().unwrap(), false).unwrap();
        assert_eq!(loc.key("bronze/a/b").as_ref(), "bronze/a/b");
        loc.root = ObjectPath::from("landing/ledgers");
        assert_eq!(loc.key("/x/y.json").as_ref(), "landing/ledgers/x/y.json");
    }
}
