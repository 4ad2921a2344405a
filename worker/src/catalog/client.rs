//! A connection to the catalog database and the statements the copier runs on it.
//!
//! Error texts never contain the password: the DSN is only shown redacted, tokio-postgres errors
//! are described from their parts (which do not include the connection string), and every text is
//! scrubbed of the password once more before it leaves this module.

use std::time::Duration;

use tokio_postgres::{Client, Config as PgConfig, NoTls};

use super::migrations::{self, MigrationError, MigrationReport};
use super::records::{DatasetIdentity, LineageRecord};
use super::tls::{self, TlsSettings};
use super::verify::LineageRow;
use crate::config::redact_dsn;
use crate::sequence::RangeSummary;

/// Connect timeout when the DSN does not set one (`connect_timeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {dsn}: invalid connection string: {message}")]
    Dsn { dsn: String, message: String },
    #[error("catalog {dsn}: cannot connect: {message}")]
    Connect { dsn: String, message: String },
    #[error("catalog {dsn}: {message}")]
    Migrate { dsn: String, message: String },
    #[error("catalog {dsn}: {what}: {message}")]
    Query {
        dsn: String,
        what: String,
        message: String,
    },
}

/// An open catalog connection.
pub struct Catalog {
    client: Client,
    dsn: String,
    password: Option<String>,
}

/// Describes a tokio-postgres error without any connection detail, and scrubs `password`.
pub(crate) fn describe(e: &tokio_postgres::Error, password: Option<&str>) -> String {
    let text = match e.as_db_error() {
        Some(db) => {
            let mut t = format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                t.push_str(&format!("; detail: {detail}"));
            }
            if let Some(hint) = db.hint() {
                t.push_str(&format!("; hint: {hint}"));
            }
            t
        }
        None => {
            let mut t = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                let s_text = s.to_string();
                if !t.contains(&s_text) {
                    t.push_str(&format!(": {s_text}"));
                }
                source = s.source();
            }
            t
        }
    };
    scrub(&text, password)
}

/// Removes `password` from `text` (defence in depth: no error text is known to contain it).
pub(crate) fn scrub(text: &str, password: Option<&str>) -> String {
    match password {
        Some(p) if p.len() >= 3 => text.replace(p, "***"),
        _ => text.to_string(),
    }
}

fn password_of(config: &PgConfig) -> Option<String> {
    config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

/// Parses the DSN: tokio-postgres's config and the TLS settings (libpq's `sslmode` and
/// `sslrootcert`, which tokio-postgres does not know; see [`tls`]).
pub(crate) fn parse_dsn(dsn: &str) -> Result<(PgConfig, TlsSettings), CatalogError> {
    let redacted = redact_dsn(dsn);
    let invalid = |message: String| CatalogError::Dsn {
        dsn: redacted.clone(),
        message,
    };
    let (pg_dsn, settings) = tls::split_dsn(dsn).map_err(invalid)?;
    let mut config: PgConfig = pg_dsn
        .parse()
        .map_err(|e: tokio_postgres::Error| invalid(e.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("bronze-copier");
    }
    Ok((config, settings))
}

/// Offline check of a DSN for the config validation: the reason it cannot be used, if any
/// (never containing the DSN itself).
pub fn check_dsn(dsn: &str) -> Result<(), String> {
    match parse_dsn(dsn) {
        Ok(_) => Ok(()),
        Err(CatalogError::Dsn { message, .. }) => Err(message),
        Err(other) => Err(other.to_string()),
    }
}

/// Connects (bounded by the connect timeout) and runs the migrations.
pub async fn connect(dsn: &str) -> Result<(Catalog, MigrationReport), CatalogError> {
    let mut catalog = Catalog::connect_only(dsn).await?;
    let report = migrations::migrate(&mut catalog.client)
        .await
        .map_err(|e| CatalogError::Migrate {
            dsn: catalog.dsn.clone(),
            message: match &e {
                MigrationError::Apply {
                    version,
                    name,
                    source,
                } => format!(
                    "catalog migration {version} ({name}): {}",
                    describe(source, catalog.password.as_deref())
                ),
                MigrationError::Db(source) => format!(
                    "catalog migrations: {}",
                    describe(source, catalog.password.as_deref())
                ),
                other => other.to_string(),
            },
        })?;
    if !report.applied.is_empty() {
        tracing::info!(
            catalog = %catalog.dsn,
            from_version = report.previous_version,
            applied = ?report.applied,
            "catalog schema migrated"
        );
    }
    Ok((catalog, report))
}

impl Catalog {
    /// Connects without migrating (read-only use, such as verification).
    pub async fn connect_only(dsn: &str) -> Result<Catalog, CatalogError> {
        let (config, settings) = parse_dsn(dsn)?;
        let redacted = redact_dsn(dsn);
        let password = password_of(&config);
        let connector = tls::connector(&settings).map_err(|message| CatalogError::Connect {
            dsn: redacted.clone(),
            message,
        })?;
        let limit = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
            // Every host in the DSN may be tried; bound the whole attempt too.
            .saturating_mul(config.get_hosts().len().max(1) as u32)
            + Duration::from_secs(1);
        let connected = match connector {
            None => open(&config, NoTls, limit, &redacted, password.as_deref()).await,
            Some(tls) => open(&config, tls, limit, &redacted, password.as_deref()).await,
        };
        let client = connected.map_err(|message| CatalogError::Connect {
            dsn: redacted.clone(),
            message: format!("{message} ({})", settings.describe()),
        })?;
        Ok(Catalog {
            client,
            dsn: redacted,
            password,
        })
    }

    /// The DSN with its password masked.
    pub fn redacted_dsn(&self) -> &str {
        &self.dsn
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn query_error(&self, what: &str, e: &tokio_postgres::Error) -> CatalogError {
        CatalogError::Query {
            dsn: self.dsn.clone(),
            what: what.to_string(),
            message: describe(e, self.password.as_deref()),
        }
    }

    /// Registers the dataset (or finds it) and returns its id. A changed schema hash is recorded
    /// in `_meta_changes` and logged.
    pub async fn upsert_dataset(
        &mut self,
        identity: &DatasetIdentity,
        schema_hash: &str,
    ) -> Result<i32, CatalogError> {
        let what = format!("register dataset {identity}");
        let result = async {
            let tx = self.client.transaction().await?;
            let existing = tx
                .query_opt(
                    "SELECT id, schema_hash FROM _meta_datasets
                     WHERE domain = $1 AND dataset = $2 AND version = $3 AND era_id = $4 AND network = $5
                     FOR UPDATE",
                    &[
                        &identity.domain,
                        &identity.dataset,
                        &identity.version,
                        &identity.era_id,
                        &identity.network,
                    ],
                )
                .await?;
            let id: i32 = match existing {
                Some(row) => {
                    let id: i32 = row.get(0);
                    let old: Option<String> = row.get(1);
                    let old = old.unwrap_or_default();
                    if !old.is_empty() && old != schema_hash {
                        tracing::warn!(
                            dataset = %identity,
                            old_schema_hash = %old,
                            new_schema_hash = %schema_hash,
                            "the dataset's Parquet schema changed; recorded in _meta_changes"
                        );
                        tx.execute(
                            "INSERT INTO _meta_changes (dataset_id, change_type, description, old_version, new_version)
                             VALUES ($1, 'schema_change', $2, $3, $3)",
                            &[
                                &id,
                                &format!("schema_hash {old} -> {schema_hash} (bronze-copier@{})", crate::VERSION),
                                &identity.version,
                            ],
                        )
                        .await?;
                    }
                    tx.execute(
                        "UPDATE _meta_datasets
                         SET schema_hash = $2, description = COALESCE(NULLIF(description, ''), $3), updated_at = NOW()
                         WHERE id = $1",
                        &[&id, &schema_hash, &identity.description()],
                    )
                    .await?;
                    id
                }
                None => {
                    tx.query_one(
                        "INSERT INTO _meta_datasets (domain, dataset, version, era_id, network, schema_hash, description)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (domain, dataset, version, era_id, network)
                         DO UPDATE SET updated_at = NOW()
                         RETURNING id",
                        &[
                            &identity.domain,
                            &identity.dataset,
                            &identity.version,
                            &identity.era_id,
                            &identity.network,
                            &schema_hash,
                            &identity.description(),
                        ],
                    )
                    .await?
                    .get(0)
                }
            };
            tx.commit().await?;
            Ok::<i32, tokio_postgres::Error>(id)
        }
        .await;
        result.map_err(|e| self.query_error(&what, &e))
    }

    /// Writes (or re-writes) the lineage and quality rows of one partition in one transaction.
    /// `prev_hash` is the checksum of the catalogued partition ending at `ledger_start - 1`
    /// (else the record's `previous_checksum`); the successor's `prev_hash` is re-pointed at
    /// this row's checksum, so the chain stays intact when a partition is re-recorded.
    /// Returns the `prev_hash` written.
    pub async fn record_partition(
        &mut self,
        dataset_id: i32,
        r: &LineageRecord,
    ) -> Result<Option<String>, CatalogError> {
        let what = format!("record partition {}-{}", r.ledger_start, r.ledger_end);
        let start = i64::from(r.ledger_start);
        let end = i64::from(r.ledger_end);
        let result = async {
            let tx = self.client.transaction().await?;
            let prev: Option<String> = tx
                .query_opt(
                    "SELECT checksum FROM _meta_lineage
                     WHERE dataset_id = $1 AND ledger_end = $2
                     ORDER BY ledger_start DESC LIMIT 1",
                    &[&dataset_id, &(start - 1)],
                )
                .await?
                .map(|row| row.get(0));
            let prev = prev.or_else(|| r.previous_checksum.clone());
            tx.execute(
                "INSERT INTO _meta_lineage (dataset_id, ledger_start, ledger_end, row_count, byte_size,
                     checksum, prev_hash, storage_path, storage_uri, producer_version, producer_git_sha,
                     source_type, source_location, parquet_path, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, NOW())
                 ON CONFLICT (dataset_id, ledger_start, ledger_end) DO UPDATE SET
                     row_count = EXCLUDED.row_count,
                     byte_size = EXCLUDED.byte_size,
                     checksum = EXCLUDED.checksum,
                     prev_hash = EXCLUDED.prev_hash,
                     storage_path = EXCLUDED.storage_path,
                     storage_uri = EXCLUDED.storage_uri,
                     producer_version = EXCLUDED.producer_version,
                     producer_git_sha = EXCLUDED.producer_git_sha,
                     source_type = EXCLUDED.source_type,
                     source_location = EXCLUDED.source_location,
                     parquet_path = EXCLUDED.parquet_path,
                     updated_at = NOW()",
                &[
                    &dataset_id,
                    &start,
                    &end,
                    &(r.row_count as i64),
                    &(r.byte_size as i64),
                    &r.checksum,
                    &prev,
                    &r.storage_path,
                    &r.storage_uri,
                    &r.producer_version,
                    &r.producer_git_sha,
                    &r.source_type,
                    &r.source_location,
                    &r.parquet_path,
                ],
            )
            .await?;
            tx.execute(
                "UPDATE _meta_lineage SET prev_hash = $3, updated_at = NOW()
                 WHERE dataset_id = $1 AND ledger_start = $2 AND prev_hash IS DISTINCT FROM $3",
                &[&dataset_id, &(end + 1), &r.checksum],
            )
            .await?;
            if let Some(q) = &r.quality {
                tx.execute(
                    "INSERT INTO _meta_quality (dataset_id, ledger_start, ledger_end, passed, error_message, details, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, NOW())
                     ON CONFLICT (dataset_id, ledger_start, ledger_end) DO UPDATE SET
                         passed = EXCLUDED.passed,
                         error_message = EXCLUDED.error_message,
                         details = EXCLUDED.details,
                         updated_at = NOW()",
                    &[&dataset_id, &start, &end, &q.passed, &q.error_message, &q.details],
                )
                .await?;
            }
            tx.commit().await?;
            Ok::<Option<String>, tokio_postgres::Error>(prev)
        }
        .await;
        result.map_err(|e| self.query_error(&what, &e))
    }

    /// The dataset's id, if it is registered.
    pub async fn dataset_id(
        &self,
        identity: &DatasetIdentity,
    ) -> Result<Option<i32>, CatalogError> {
        self.client
            .query_opt(
                "SELECT id FROM _meta_datasets
                 WHERE domain = $1 AND dataset = $2 AND version = $3 AND era_id = $4 AND network = $5",
                &[
                    &identity.domain,
                    &identity.dataset,
                    &identity.version,
                    &identity.era_id,
                    &identity.network,
                ],
            )
            .await
            .map(|row| row.map(|r| r.get(0)))
            .map_err(|e| self.query_error(&format!("look up dataset {identity}"), &e))
    }

    /// How many lineage rows lie within `[first, through]`, with the sums of their first and last
    /// ledgers: one cheap query that tells whether a run of grid partitions is complete.
    pub async fn lineage_summary(
        &self,
        dataset_id: i32,
        first: u32,
        through: u32,
    ) -> Result<RangeSummary, CatalogError> {
        let row = self
            .client
            .query_one(
                "SELECT count(*), coalesce(sum(ledger_start), 0)::bigint, coalesce(sum(ledger_end), 0)::bigint
                 FROM _meta_lineage
                 WHERE dataset_id = $1 AND ledger_start >= $2 AND ledger_end <= $3",
                &[&dataset_id, &i64::from(first), &i64::from(through)],
            )
            .await
            .map_err(|e| self.query_error("count lineage", &e))?;
        Ok(RangeSummary {
            count: row.get::<_, i64>(0) as u64,
            starts: row.get::<_, i64>(1) as u64,
            ends: row.get::<_, i64>(2) as u64,
        })
    }

    /// Every lineage row of the dataset (with its quality verdict), in ledger order. Reads only
    /// the original's columns, so it works on a database the original created.
    pub async fn lineage(&self, dataset_id: i32) -> Result<Vec<LineageRow>, CatalogError> {
        let rows = self
            .client
            .query(
                "SELECT l.ledger_start, l.ledger_end, l.row_count, l.byte_size, l.checksum, l.prev_hash,
                        l.storage_uri, q.passed
                 FROM _meta_lineage l
                 LEFT JOIN _meta_quality q
                   ON q.dataset_id = l.dataset_id AND q.ledger_start = l.ledger_start AND q.ledger_end = l.ledger_end
                 WHERE l.dataset_id = $1
                 ORDER BY l.ledger_start, l.ledger_end",
                &[&dataset_id],
            )
            .await
            .map_err(|e| self.query_error("read lineage", &e))?;
        Ok(rows
            .iter()
            .map(|row| LineageRow {
                ledger_start: row.get(0),
                ledger_end: row.get(1),
                row_count: row.get(2),
                byte_size: row.get(3),
                checksum: row.get(4),
                prev_hash: row.get(5),
                storage_uri: row.get(6),
                quality_passed: row.get(7),
            })
            .collect())
    }
}

/// Connects with `tls` within `limit` and drives the connection in a task; the error text is
/// scrubbed of `password`.
async fn open<T>(
    config: &PgConfig,
    tls: T,
    limit: Duration,
    redacted: &str,
    password: Option<&str>,
) -> Result<Client, String>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = match tokio::time::timeout(limit, config.connect(tls)).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(describe(&e, password)),
        Err(_) => return Err(format!("timed out after {limit:?}")),
    };
    let log_dsn = redacted.to_string();
    let log_password = password.map(str::to_string);
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(
                catalog = %log_dsn,
                error = %describe(&e, log_password.as_deref()),
                "catalog connection closed"
            );
        }
    });
    Ok(client)
}

/// Runs one catalog operation with a time limit, so a hung database cannot stall the caller
/// forever; the caller drops the connection and re-opens it next time. `dsn` is the redacted DSN
/// the error names.
pub(crate) async fn within<T>(
    limit: Duration,
    dsn: &str,
    what: &str,
    operation: impl std::future::Future<Output = Result<T, CatalogError>>,
) -> Result<T, CatalogError> {
    tokio::time::timeout(limit, operation)
        .await
        .unwrap_or_else(|_| {
            Err(CatalogError::Query {
                dsn: dsn.to_string(),
                what: what.to_string(),
                message: format!("no answer within {limit:?}"),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_libpq_tls_mode_parses_and_errors_hide_the_password() {
        for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            let (_, s) = parse_dsn(&format!("postgres://u:p@db/x?sslmode={mode}")).unwrap();
            assert_eq!(s.mode.as_str(), mode);
            parse_dsn(&format!("host=db user=u password=p sslmode={mode}")).unwrap();
        }
        let err = parse_dsn("postgres://u:hunter22@db:5432/x?sslmode=sometimes")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("invalid sslmode \"sometimes\""), "{err}");
        assert!(!err.contains("hunter22"), "{err}");
    }

    #[test]
    fn a_timeout_is_always_set() {
        let (c, _) = parse_dsn("postgres://u@db/x").unwrap();
        assert_eq!(c.get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));
        let (c, _) = parse_dsn("postgres://u@db/x?connect_timeout=3").unwrap();
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(3)));
    }

    #[test]
    fn scrub_removes_the_password() {
        assert_eq!(
            scrub("auth failed for s3cret!", Some("s3cret!")),
            "auth failed for ***"
        );
        assert_eq!(scrub("x", None), "x");
    }

    #[tokio::test]
    async fn connection_refused_names_the_redacted_dsn_only() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dsn = format!("postgres://bronze:pa55word-xyz@127.0.0.1:{port}/catalog");
        let err = Catalog::connect_only(&dsn).await.err().unwrap().to_string();
        assert!(err.contains("cannot connect"), "{err}");
        assert!(err.contains("127.0.0.1"), "{err}");
        assert!(!err.contains("pa55word-xyz"), "{err}");
    }
}
