//! Versioned catalog schema. Version 1 is the original program's `schema.sql`, column for
//! column, so a database it created is adopted as version 1 (every statement is
//! `IF NOT EXISTS`, and the view definition is the original's). Later versions only add.
//!
//! Applied versions are recorded in `_meta_schema_migrations`. All pending migrations run in one
//! transaction holding a transaction-scoped advisory lock: a second copier starting at the same
//! moment waits, then finds nothing left to do.

use tokio_postgres::Client;

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Key of the advisory lock that serialises migrations (ASCII "bronzeMG").
pub const LOCK_KEY: i64 = 0x62_72_6f_6e_7a_65_4d_47;

pub const MIGRATIONS_TABLE: &str = "_meta_schema_migrations";

const ORIGINAL_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS _meta_datasets (
    id              SERIAL PRIMARY KEY,
    domain          VARCHAR(64) NOT NULL,
    dataset         VARCHAR(128) NOT NULL,
    version         VARCHAR(32) NOT NULL,
    era_id          VARCHAR(64) NOT NULL,
    network         VARCHAR(32) NOT NULL,
    schema_hash     VARCHAR(64),
    description     TEXT,
    created_at      TIMESTAMPTZ DEFAULT NOW(),
    updated_at      TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(domain, dataset, version, era_id, network)
);

CREATE TABLE IF NOT EXISTS _meta_lineage (
    id                  SERIAL PRIMARY KEY,
    dataset_id          INTEGER NOT NULL REFERENCES _meta_datasets(id),
    ledger_start        BIGINT NOT NULL,
    ledger_end          BIGINT NOT NULL,
    row_count           BIGINT NOT NULL,
    byte_size           BIGINT NOT NULL,
    checksum            VARCHAR(128) NOT NULL,
    prev_hash           VARCHAR(128),
    storage_path        TEXT NOT NULL,
    storage_uri         TEXT,
    producer_version    VARCHAR(64) NOT NULL,
    producer_git_sha    VARCHAR(64),
    source_type         VARCHAR(32),
    source_location     TEXT,
    created_at          TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(dataset_id, ledger_start, ledger_end)
);

CREATE INDEX IF NOT EXISTS idx_lineage_dataset_range
    ON _meta_lineage(dataset_id, ledger_start, ledger_end);

CREATE INDEX IF NOT EXISTS idx_lineage_ledger_end
    ON _meta_lineage(dataset_id, ledger_end);

CREATE TABLE IF NOT EXISTS _meta_quality (
    id              SERIAL PRIMARY KEY,
    dataset_id      INTEGER NOT NULL REFERENCES _meta_datasets(id),
    ledger_start    BIGINT NOT NULL,
    ledger_end      BIGINT NOT NULL,
    passed          BOOLEAN NOT NULL,
    error_message   TEXT,
    created_at      TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(dataset_id, ledger_start, ledger_end)
);

CREATE INDEX IF NOT EXISTS idx_quality_failed
    ON _meta_quality(dataset_id, passed) WHERE NOT passed;

CREATE TABLE IF NOT EXISTS _meta_changes (
    id              SERIAL PRIMARY KEY,
    dataset_id      INTEGER NOT NULL REFERENCES _meta_datasets(id),
    change_type     VARCHAR(32) NOT NULL,
    description     TEXT,
    old_version     VARCHAR(32),
    new_version     VARCHAR(32),
    created_at      TIMESTAMPTZ DEFAULT NOW()
);

CREATE OR REPLACE VIEW _meta_coverage AS
SELECT
    d.domain,
    d.dataset,
    d.version,
    d.era_id,
    d.network,
    MIN(l.ledger_start) AS min_ledger,
    MAX(l.ledger_end) AS max_ledger,
    COUNT(*) AS partition_count,
    SUM(l.row_count) AS total_rows,
    SUM(l.byte_size) AS total_bytes
FROM _meta_datasets d
JOIN _meta_lineage l ON d.id = l.dataset_id
GROUP BY d.domain, d.dataset, d.version, d.era_id, d.network;
"#;

/// Columns this copier adds: where the Parquet file is (key under the storage root, prefix
/// included), when a row was last re-recorded, and what a quality row checked.
const LINEAGE_PATHS_AND_QUALITY_DETAILS: &str = r#"
ALTER TABLE _meta_lineage ADD COLUMN IF NOT EXISTS parquet_path TEXT;
ALTER TABLE _meta_lineage ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ;
ALTER TABLE _meta_quality ADD COLUMN IF NOT EXISTS details JSONB;
ALTER TABLE _meta_quality ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ;
"#;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "original bronze-copier catalog schema",
        sql: ORIGINAL_SCHEMA,
    },
    Migration {
        version: 2,
        name: "lineage parquet_path and updated_at; quality details and updated_at",
        sql: LINEAGE_PATHS_AND_QUALITY_DETAILS,
    },
];

/// The newest schema version this copier knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub previous_version: i32,
    pub applied: Vec<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "catalog schema is at version {found}, newer than this copier knows ({known}); upgrade bronze-copier"
    )]
    TooNew { found: i32, known: i32 },
    #[error("catalog migration {version} ({name}): {source}")]
    Apply {
        version: i32,
        name: &'static str,
        source: tokio_postgres::Error,
    },
    #[error("catalog migrations: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Brings the schema to [`latest_version`].
pub async fn migrate(client: &mut Client) -> Result<MigrationReport, MigrationError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
            version     INTEGER PRIMARY KEY,
            name        TEXT NOT NULL,
            applied_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
        )"
    ))
    .await?;
    let current: i32 = tx
        .query_one(
            &format!("SELECT COALESCE(MAX(version), 0) FROM {MIGRATIONS_TABLE}"),
            &[],
        )
        .await?
        .get(0);
    if current > latest_version() {
        return Err(MigrationError::TooNew {
            found: current,
            known: latest_version(),
        });
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(m.sql)
            .await
            .map_err(|source| MigrationError::Apply {
                version: m.version,
                name: m.name,
                source,
            })?;
        tx.execute(
            &format!("INSERT INTO {MIGRATIONS_TABLE} (version, name) VALUES ($1, $2)"),
            &[&m.version, &m.name],
        )
        .await?;
        applied.push(m.version);
    }
    tx.commit().await?;
    Ok(MigrationReport {
        previous_version: current,
        applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "{}", m.name);
        }
    }

    #[test]
    fn every_statement_tolerates_an_existing_object() {
        // So an original database (tables, indexes and view already there) is adopted.
        for m in MIGRATIONS {
            for stmt in m.sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                let upper = stmt.to_ascii_uppercase();
                assert!(
                    upper.contains("IF NOT EXISTS") || upper.starts_with("CREATE OR REPLACE VIEW"),
                    "migration {}: {stmt}",
                    m.version
                );
            }
        }
    }
}
