//! Reading files from one history archive (the thin I/O layer): over HTTP(S) with reqwest, and
//! from a local directory, S3 or GCS through object_store. Transient failures are retried with
//! the source's read policy (`source/read_policy.rs`: short, jittered, exponential waits, at
//! least [`read_policy::MIN_ATTEMPTS`] attempts) and counted as `retries_total{operation=
//! "archive_read"}`. A redirect is not followed: it is reported, with where it points.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::source::read_policy;

/// The form of an archive URL (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveUrl {
    /// `http://` or `https://`, without a trailing `/`.
    Http(String),
    /// `file://` or a plain path.
    Local(PathBuf),
    S3 {
        bucket: String,
        prefix: String,
    },
    Gcs {
        bucket: String,
        prefix: String,
    },
}

/// Parses an archive URL: `https://host/path`, `http://...`, `s3://bucket/prefix`,
/// `gs://bucket/prefix`, `file:///dir` or a local path.
pub fn parse_archive_url(text: &str) -> Result<ArchiveUrl, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty".into());
    }
    let bucket = |rest: &str, scheme: &str| {
        let (bucket, prefix) = crate::store::split_bucket_path(rest);
        if bucket.is_empty() {
            return Err(format!(
                "{scheme}:// needs a bucket ({scheme}://bucket/prefix)"
            ));
        }
        Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
    };
    if let Some(rest) = text.strip_prefix("s3://") {
        let (bucket, prefix) = bucket(rest, "s3")?;
        return Ok(ArchiveUrl::S3 { bucket, prefix });
    }
    if let Some(rest) = text.strip_prefix("gs://") {
        let (bucket, prefix) = bucket(rest, "gs")?;
        return Ok(ArchiveUrl::Gcs { bucket, prefix });
    }
    if let Some(path) = text.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err("file:// needs an absolute path (file:///dir)".into());
        }
        return Ok(ArchiveUrl::Local(PathBuf::from(path)));
    }
    if text.starts_with("http://") || text.starts_with("https://") {
        let parsed = url::Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err("the URL has no host".into());
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err("an archive URL has no query or fragment".into());
        }
        return Ok(ArchiveUrl::Http(text.trim_end_matches('/').to_string()));
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(format!(
            "unsupported scheme {scheme}:// (use https://, http://, s3://, gs://, file:// or a path)"
        ));
    }
    Ok(ArchiveUrl::Local(PathBuf::from(text)))
}

/// How an archive is reached: S3 endpoint and region for `s3://` (those of the source unless
/// set), and the read policy's attempts and first wait.
#[derive(Debug, Clone)]
pub struct ReaderSettings {
    pub s3_endpoint: String,
    pub s3_region: String,
    pub retry_attempts: u32,
    pub first_backoff: Duration,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("archive {url}: cannot open: {message}")]
    Open { url: String, message: String },
    #[error("archive {url}: {path}: unreachable after {attempts} attempts: {message}")]
    Unreachable {
        url: String,
        path: String,
        attempts: u32,
        message: String,
    },
    #[error(
        "archive {url}: {path}: the server answered with a redirect ({status}) to {location:?} instead of the file; set the archive URL to where the archive really is"
    )]
    Redirect {
        url: String,
        path: String,
        status: u16,
        location: String,
    },
    #[error("archive {url}: {path}: HTTP status {status}")]
    Status {
        url: String,
        path: String,
        status: u16,
    },
}

enum Backend {
    Http(reqwest::Client),
    Store(Arc<dyn ObjectStore>, ObjectPath),
}

/// One archive, open.
pub struct ArchiveReader {
    /// The archive's URL as configured (for messages, manifests and the catalog).
    pub url: String,
    backend: Backend,
    retry_attempts: u32,
    first_backoff: Duration,
    retries: AtomicUsize,
}

/// One failed attempt: worth another (network, 5xx, 429) or not.
enum Failure {
    Transient(String),
    Fatal(ReadError),
}

impl ArchiveReader {
    pub fn open(url: &str, settings: &ReaderSettings) -> Result<Self, ReadError> {
        let open_err = |message: String| ReadError::Open {
            url: url.to_string(),
            message,
        };
        let backend = match parse_archive_url(url).map_err(open_err)? {
            ArchiveUrl::Http(_) => Backend::Http(
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(crate::store::READ_TIMEOUT)
                    .build()
                    .map_err(|e| open_err(e.to_string()))?,
            ),
            ArchiveUrl::Local(dir) => {
                let store = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| open_err(format!("{}: {e}", dir.display())))?;
                Backend::Store(Arc::new(store), ObjectPath::default())
            }
            ArchiveUrl::S3 { bucket, prefix } => {
                Backend::Store(s3(&bucket, settings).map_err(open_err)?, prefix.into())
            }
            ArchiveUrl::Gcs { bucket, prefix } => {
                Backend::Store(gcs(&bucket).map_err(open_err)?, prefix.into())
            }
        };
        Ok(Self {
            url: url.trim().trim_end_matches('/').to_string(),
            backend,
            retry_attempts: settings.retry_attempts.max(read_policy::MIN_ATTEMPTS),
            first_backoff: settings.first_backoff,
            retries: AtomicUsize::new(0),
        })
    }

    /// The file at `path` in the archive (`None`: the archive has no such file), retrying
    /// transient failures.
    pub async fn get(&self, path: &str) -> Result<Option<Bytes>, ReadError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let message = match self.get_once(path).await {
                Ok(found) => return Ok(found),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(message)) => message,
            };
            if attempt >= self.retry_attempts {
                return Err(ReadError::Unreachable {
                    url: self.url.clone(),
                    path: path.to_string(),
                    attempts: attempt,
                    message,
                });
            }
            let noise = self.retries.fetch_add(1, Ordering::Relaxed) as u64;
            let backoff = read_policy::backoff(attempt, self.first_backoff, noise);
            tracing::warn!(archive = %self.url, path, attempt, error = %message, "archive read failed; retrying in {backoff:?}");
            crate::metrics::retry("archive_read");
            tokio::time::sleep(backoff).await;
        }
    }

    async fn get_once(&self, path: &str) -> Result<Option<Bytes>, Failure> {
        match &self.backend {
            Backend::Http(client) => self.get_http(client, path).await,
            Backend::Store(store, root) => {
                let key = join(root, path);
                let got = match store.get(&key).await {
                    Ok(got) => got.bytes().await,
                    Err(e) => Err(e),
                };
                match got {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) if read_policy::is_transient(&e) => {
                        Err(Failure::Transient(e.to_string()))
                    }
                    Err(e) => Err(Failure::Fatal(ReadError::Unreachable {
                        url: self.url.clone(),
                        path: path.to_string(),
                        attempts: 1,
                        message: e.to_string(),
                    })),
                }
            }
        }
    }

    async fn get_http(
        &self,
        client: &reqwest::Client,
        path: &str,
    ) -> Result<Option<Bytes>, Failure> {
        let full = format!("{}/{}", self.url, path);
        let response = client
            .get(&full)
            .send()
            .await
            .map_err(|e| Failure::Transient(error_chain(&e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return Ok(None);
        }
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            return Err(Failure::Fatal(ReadError::Redirect {
                url: self.url.clone(),
                path: path.to_string(),
                status: status.as_u16(),
                location,
            }));
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::Transient(format!("HTTP status {status}")));
        }
        if !status.is_success() {
            return Err(Failure::Fatal(ReadError::Status {
                url: self.url.clone(),
                path: path.to_string(),
                status: status.as_u16(),
            }));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Failure::Transient(error_chain(&e)))?;
        Ok(Some(bytes))
    }
}

fn join(root: &ObjectPath, path: &str) -> ObjectPath {
    let parts: Vec<&str> = root
        .as_ref()
        .split('/')
        .chain(path.split('/'))
        .filter(|s| !s.is_empty())
        .collect();
    ObjectPath::from(parts.join("/"))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// An S3 bucket: the source's endpoint and region unless the archive's own are set; keys from
/// the environment if there are any, else unsigned requests (a public bucket), never the
/// instance metadata service.
fn s3(bucket: &str, settings: &ReaderSettings) -> Result<Arc<dyn ObjectStore>, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let region = Some(settings.s3_region.clone())
        .filter(|r| !r.is_empty())
        .or_else(|| env("AWS_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(region)
        .with_retry(crate::store::no_retries());
    if !settings.s3_endpoint.is_empty() {
        builder = builder
            .with_endpoint(&settings.s3_endpoint)
            .with_allow_http(settings.s3_endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    builder = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => {
            let b = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            match env("AWS_SESSION_TOKEN") {
                Some(token) => b.with_token(token),
                None => b,
            }
        }
        _ => builder.with_skip_signature(true),
    };
    Ok(Arc::new(builder.build().map_err(|e| e.to_string())?))
}

/// A GCS bucket: `GOOGLE_APPLICATION_CREDENTIALS` if set, else unsigned requests (public).
fn gcs(bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
    let mut builder = GoogleCloudStorageBuilder::new()
        .with_bucket_name(bucket)
        .with_retry(crate::store::no_retries());
    builder = match std::env::var("GOOGLE_APPLICATION_CREDENTIALS")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(path) => builder.with_service_account_path(path),
        None => builder.with_skip_signature(true),
    };
    Ok(Arc::new(builder.build().map_err(|e| e.to_string())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_urls_of_every_supported_form() {
        assert_eq!(
            parse_archive_url("https://history.stellar.org/prd/core-testnet/core_testnet_001/"),
            Ok(ArchiveUrl::Http(
                "https://history.stellar.org/prd/core-testnet/core_testnet_001".into()
            ))
        );
        assert_eq!(
            parse_archive_url("s3://bucket/a/b/"),
            Ok(ArchiveUrl::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            })
        );
        assert_eq!(
            parse_archive_url("gs://bucket"),
            Ok(ArchiveUrl::Gcs {
                bucket: "bucket".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            parse_archive_url("file:///srv/archive"),
            Ok(ArchiveUrl::Local("/srv/archive".into()))
        );
        assert_eq!(
            parse_archive_url("./archive"),
            Ok(ArchiveUrl::Local("./archive".into()))
        );
        for bad in [
            "",
            "ftp://x/y",
            "s3://",
            "file://relative",
            "https://",
            "https://h/p?x=1",
        ] {
            assert!(parse_archive_url(bad).is_err(), "{bad:?}");
        }
    }
}
