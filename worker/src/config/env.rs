//! Environment variables (docs/configuration.md#keys-and-variables, named as in the original's
//! runbook), applied on top of the YAML file. A set, non-empty variable always wins over the file, so
//! `MAX_IN_FLIGHT_PARTITIONS=8 bronze-copier -config config.yaml` does what the runbook says.
//! A value that does not parse is an error naming the variable, never a silent zero.

use super::{Choice, Config};

type Apply = fn(&mut Config, &str) -> Result<(), String>;

/// Every variable Bronze reads, with the config key it overrides.
pub const ENV_VARS: &[(&str, &str, Apply)] = &[
    ("COPIER_ID", "copier_id", |c, v| {
        set_str(&mut c.copier_id, v)
    }),
    ("ERA_ID", "era.era_id", |c, v| set_str(&mut c.era.era_id, v)),
    ("VERSION_LABEL", "era.version_label", |c, v| {
        set_str(&mut c.era.version_label, v)
    }),
    ("NETWORK", "era.network", |c, v| {
        set_str(&mut c.era.network, v)
    }),
    ("NETWORK_PASSPHRASE", "era.network_passphrase", |c, v| {
        c.era.network_passphrase = Some(v.to_string());
        Ok(())
    }),
    ("LEDGER_START", "era.ledger_start", |c, v| {
        set_num(&mut c.era.ledger_start, v)
    }),
    ("LEDGER_END", "era.ledger_end", |c, v| {
        set_num(&mut c.era.ledger_end, v)
    }),
    ("PARTITION_SIZE", "era.partition_size", |c, v| {
        set_num(&mut c.era.partition_size, v)
    }),
    ("ALLOW_OVERWRITE", "era.allow_overwrite", |c, v| {
        set_bool(&mut c.era.allow_overwrite, v)
    }),
    ("INGESTED_AT", "era.ingested_at", |c, v| {
        c.era.ingested_at = Some(v.to_string());
        Ok(())
    }),
    ("SOURCE_MODE", "source.mode", |c, v| {
        choose(c, "source.mode", v, |c, m| c.source.mode = m)
    }),
    ("SOURCE_LOCAL_PATH", "source.local_path", |c, v| {
        set_str(&mut c.source.local_path, v)
    }),
    ("SOURCE_GCS_BUCKET", "source.gcs_bucket", |c, v| {
        set_str(&mut c.source.gcs_bucket, v)
    }),
    ("SOURCE_GCS_PREFIX", "source.gcs_prefix", |c, v| {
        set_str(&mut c.source.gcs_prefix, v)
    }),
    ("SOURCE_S3_BUCKET", "source.s3_bucket", |c, v| {
        set_str(&mut c.source.s3_bucket, v)
    }),
    ("SOURCE_S3_PREFIX", "source.s3_prefix", |c, v| {
        set_str(&mut c.source.s3_prefix, v)
    }),
    ("SOURCE_S3_ENDPOINT", "source.s3_endpoint", |c, v| {
        set_str(&mut c.source.s3_endpoint, v)
    }),
    ("SOURCE_S3_REGION", "source.s3_region", |c, v| {
        set_str(&mut c.source.s3_region, v)
    }),
    ("SOURCE_DATASTORE_TYPE", "source.datastore_type", |c, v| {
        choose(c, "source.datastore_type", v, |c, t| {
            c.source.datastore_type = Some(t)
        })
    }),
    ("SOURCE_DATASTORE_PATH", "source.datastore_path", |c, v| {
        set_str(&mut c.source.datastore_path, v)
    }),
    (
        "SOURCE_POLL_INTERVAL_MS",
        "source.poll_interval_ms",
        |c, v| set_num(&mut c.source.poll_interval_ms, v),
    ),
    (
        "SOURCE_LEDGERS_PER_BATCH",
        "source.ledgers_per_batch",
        |c, v| set_opt_num(&mut c.source.ledgers_per_batch, v),
    ),
    (
        "SOURCE_BATCHES_PER_PARTITION",
        "source.batches_per_partition",
        |c, v| set_opt_num(&mut c.source.batches_per_partition, v),
    ),
    ("STORAGE_BACKEND", "storage.backend", |c, v| {
        choose(c, "storage.backend", v, |c, b| c.storage.backend = b)
    }),
    ("STORAGE_LOCAL_DIR", "storage.local_dir", |c, v| {
        set_str(&mut c.storage.local_dir, v)
    }),
    ("STORAGE_GCS_BUCKET", "storage.gcs_bucket", |c, v| {
        set_str(&mut c.storage.gcs_bucket, v)
    }),
    ("STORAGE_S3_BUCKET", "storage.s3_bucket", |c, v| {
        set_str(&mut c.storage.s3_bucket, v)
    }),
    ("STORAGE_S3_ENDPOINT", "storage.s3_endpoint", |c, v| {
        set_str(&mut c.storage.s3_endpoint, v)
    }),
    ("STORAGE_S3_REGION", "storage.s3_region", |c, v| {
        set_str(&mut c.storage.s3_region, v)
    }),
    ("STORAGE_PREFIX", "storage.prefix", |c, v| {
        set_str(&mut c.storage.prefix, v)
    }),
    ("STORAGE_COMPRESSION", "storage.compression", |c, v| {
        choose(c, "storage.compression", v, |c, z| {
            c.storage.compression = z
        })
    }),
    (
        "STORAGE_COMPRESSION_LEVEL",
        "storage.compression_level",
        |c, v| {
            c.storage.compression_level = Some(
                v.trim()
                    .parse()
                    .map_err(|_| "not a valid integer".to_string())?,
            );
            Ok(())
        },
    ),
    (
        "STORAGE_ROW_GROUP_BYTES",
        "storage.row_group_bytes",
        |c, v| set_num(&mut c.storage.row_group_bytes, v),
    ),
    (
        "STORAGE_UPLOAD_PART_BYTES",
        "storage.upload_part_bytes",
        |c, v| set_num(&mut c.storage.upload_part_bytes, v),
    ),
    ("STORAGE_TABLE_FORMAT", "storage.table_format", |c, v| {
        choose(c, "storage.table_format", v, |c, f| {
            c.storage.table_format = f
        })
    }),
    (
        "STORAGE_PROVISIONAL_TIP",
        "storage.provisional_tip",
        |c, v| set_bool(&mut c.storage.provisional_tip, v),
    ),
    (
        "STORAGE_PROVISIONAL_RETENTION_HOURS",
        "storage.provisional_retention_hours",
        |c, v| set_num(&mut c.storage.provisional_retention_hours, v),
    ),
    ("CATALOG_DSN", "catalog.postgres_dsn", |c, v| {
        set_str(&mut c.catalog.postgres_dsn, v)
    }),
    ("CATALOG_NAMESPACE", "catalog.namespace", |c, v| {
        c.catalog.namespace = Some(v.to_string());
        Ok(())
    }),
    ("CATALOG_STRICT", "catalog.strict", |c, v| {
        set_bool(&mut c.catalog.strict, v)
    }),
    ("PAS_ENABLED", "pas.enabled", |c, v| {
        set_bool(&mut c.pas.enabled, v)
    }),
    ("PAS_ENDPOINT", "pas.endpoint", |c, v| {
        set_str(&mut c.pas.endpoint, v)
    }),
    ("PAS_BACKUP_DIR", "pas.backup_dir", |c, v| {
        set_str(&mut c.pas.backup_dir, v)
    }),
    ("PAS_STRICT", "pas.strict", |c, v| {
        set_bool(&mut c.pas.strict, v)
    }),
    ("PAS_OUTBOX", "pas.outbox", |c, v| {
        choose(c, "pas.outbox", v, |c, o| c.pas.outbox = o)
    }),
    ("BRONZE_PRIMARY_TABLE", "bronze.primary_table", |c, v| {
        set_str(&mut c.bronze.primary_table, v)
    }),
    ("CHECKPOINT_ENABLED", "checkpoint.enabled", |c, v| {
        set_bool(&mut c.checkpoint.enabled, v)
    }),
    ("CHECKPOINT_DIR", "checkpoint.dir", |c, v| {
        set_str(&mut c.checkpoint.dir, v)
    }),
    (
        "MAX_IN_FLIGHT_PARTITIONS",
        "perf.max_in_flight_partitions",
        |c, v| set_num(&mut c.perf.max_in_flight_partitions, v),
    ),
    ("WORKERS", "perf.workers", |c, v| {
        set_num(&mut c.perf.workers, v)
    }),
    ("QUEUE_SIZE", "perf.queue_size", |c, v| {
        set_num(&mut c.perf.queue_size, v)
    }),
    ("RETRY_ATTEMPTS", "perf.retry_attempts", |c, v| {
        set_num(&mut c.perf.retry_attempts, v)
    }),
    ("RETRY_BACKOFF_MS", "perf.retry_backoff_ms", |c, v| {
        set_num(&mut c.perf.retry_backoff_ms, v)
    }),
    ("LOG_FORMAT", "logging.format", |c, v| {
        choose(c, "logging.format", v, |c, f| c.logging.format = f)
    }),
    ("LOG_LEVEL", "logging.level", |c, v| {
        choose(c, "logging.level", v, |c, l| c.logging.level = l)
    }),
    ("METRICS_ENABLED", "metrics.enabled", |c, v| {
        set_bool(&mut c.metrics.enabled, v)
    }),
    ("METRICS_ADDRESS", "metrics.address", |c, v| {
        set_str(&mut c.metrics.address, v)
    }),
    ("ARCHIVE_URL", "archive.url", |c, v| {
        set_str(&mut c.archive.url, v)
    }),
    ("ARCHIVE_URLS", "archive.urls", |c, v| {
        c.archive.urls = split_list(v);
        Ok(())
    }),
    (
        "ARCHIVE_ALLOW_UNANCHORED",
        "archive.allow_unanchored",
        |c, v| set_bool(&mut c.archive.allow_unanchored, v),
    ),
    (
        "ARCHIVE_TRUSTED_LEDGER_SEQUENCE",
        "archive.trusted_ledger.sequence",
        |c, v| {
            set_num(
                &mut c.archive.trusted_ledger.get_or_insert_default().sequence,
                v,
            )
        },
    ),
    (
        "ARCHIVE_TRUSTED_LEDGER_HASH",
        "archive.trusted_ledger.hash",
        |c, v| {
            set_str(
                &mut c.archive.trusted_ledger.get_or_insert_default().hash,
                v,
            )
        },
    ),
];

/// The variables that were applied, for the log line that says where each value came from.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EnvOverrides {
    pub applied: Vec<(&'static str, &'static str)>,
}

/// Applies every set, non-empty variable returned by `lookup` to `config`.
/// Errors name the variable, the key and the bad value; all bad variables are reported at once.
pub fn apply_env(
    config: &mut Config,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<EnvOverrides, Vec<String>> {
    let mut overrides = EnvOverrides::default();
    let mut errors = Vec::new();
    for (var, key, apply) in ENV_VARS {
        let Some(value) = lookup(var).filter(|v| !v.is_empty()) else {
            continue;
        };
        // The variable replaces the file's value, including one the file got wrong.
        config.rejected.remove(*key);
        match apply(config, &value) {
            Ok(()) => overrides.applied.push((var, key)),
            Err(why) => errors.push(format!("{var} (overrides {key}): {why}: {value:?}")),
        }
    }
    if errors.is_empty() {
        Ok(overrides)
    } else {
        Err(errors)
    }
}

/// The environment variable that overrides config `key` (`storage.backend` -> `STORAGE_BACKEND`),
/// so a driver that configures the worker through its environment names no variable by hand.
pub fn env_var(key: &str) -> Option<&'static str> {
    ENV_VARS
        .iter()
        .find(|(_, k, _)| *k == key)
        .map(|(var, _, _)| *var)
}

/// Sets a closed-set value; text that names no choice is kept in `config.rejected` under `key`
/// for [`super::validate`] to report, exactly as a bad value in the file is.
fn choose<T: Choice>(
    config: &mut Config,
    key: &str,
    value: &str,
    set: fn(&mut Config, T),
) -> Result<(), String> {
    match value.parse::<T>() {
        Ok(choice) => set(config, choice),
        Err(_) => {
            config.rejected.insert(key.to_string(), value.to_string());
        }
    }
    Ok(())
}

/// A comma-separated list, each entry trimmed, empty entries left out.
fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

fn set_str(slot: &mut String, value: &str) -> Result<(), String> {
    *slot = value.to_string();
    Ok(())
}

fn set_num<T: std::str::FromStr>(slot: &mut T, value: &str) -> Result<(), String> {
    *slot = value
        .trim()
        .parse()
        .map_err(|_| "not a valid non-negative integer".to_string())?;
    Ok(())
}

fn set_opt_num<T: std::str::FromStr>(slot: &mut Option<T>, value: &str) -> Result<(), String> {
    *slot = Some(
        value
            .trim()
            .parse()
            .map_err(|_| "not a valid non-negative integer".to_string())?,
    );
    Ok(())
}

fn set_bool(slot: &mut bool, value: &str) -> Result<(), String> {
    *slot = parse_bool(value).ok_or_else(|| "expected true or false".to_string())?;
    Ok(())
}

pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Compression, DatastoreType, LogLevel, SourceMode, StorageBackend};
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn env_overrides_file_values() {
        let mut config = Config::default();
        config.perf.max_in_flight_partitions = 2;
        let applied = apply_env(
            &mut config,
            env(&[("MAX_IN_FLIGHT_PARTITIONS", "8"), ("NETWORK", "testnet")]),
        )
        .unwrap();
        assert_eq!(config.perf.max_in_flight_partitions, 8);
        assert_eq!(config.era.network, "testnet");
        assert_eq!(applied.applied.len(), 2);
    }

    #[test]
    fn empty_value_counts_as_unset() {
        let mut config = Config::default();
        apply_env(&mut config, env(&[("NETWORK", "")])).unwrap();
        assert_eq!(config.era.network, "pubnet");
    }

    #[test]
    fn bad_number_is_an_error_naming_the_variable_not_a_zero() {
        let mut config = Config::default();
        let errors = apply_env(
            &mut config,
            env(&[("LEDGER_START", "12x"), ("PAS_STRICT", "maybe")]),
        )
        .unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].contains("LEDGER_START") && errors[0].contains("era.ledger_start"));
        assert!(errors[0].contains("12x"));
        assert!(errors[1].contains("PAS_STRICT"));
        assert_eq!(
            config.era.ledger_start, 1,
            "a bad value must not change the config"
        );
    }

    #[test]
    fn every_closed_set_variable_records_a_bad_value_under_its_own_key() {
        for (var, key, _) in ENV_VARS {
            if !crate::config::choice::CHOICE_KEYS
                .iter()
                .any(|(k, _)| k == key)
            {
                continue;
            }
            let mut config = Config::default();
            apply_env(&mut config, env(&[(var, "nonsense")])).unwrap();
            assert_eq!(
                config.rejected.get(*key).map(String::as_str),
                Some("nonsense"),
                "{var}"
            );
            assert_eq!(config.rejected.len(), 1, "{var}");
        }
        // A good value from the environment replaces a bad one from the file.
        let mut config = Config::default();
        config
            .rejected
            .insert("storage.backend".into(), "ftp".into());
        apply_env(&mut config, env(&[("STORAGE_BACKEND", "s3")])).unwrap();
        assert!(config.rejected.is_empty());
        assert_eq!(config.storage.backend, StorageBackend::S3);
    }

    #[test]
    fn closed_sets_parse_from_the_environment() {
        let mut config = Config::default();
        apply_env(
            &mut config,
            env(&[
                ("SOURCE_MODE", "datastore"),
                ("SOURCE_DATASTORE_TYPE", "s3"),
                ("STORAGE_COMPRESSION", "LZ4"),
                ("LOG_LEVEL", "warning"),
            ]),
        )
        .unwrap();
        assert_eq!(config.source.mode, SourceMode::Datastore);
        assert_eq!(config.source.datastore_type, Some(DatastoreType::S3));
        assert_eq!(config.storage.compression, Compression::Lz4);
        assert_eq!(config.logging.level, LogLevel::Warn);
        assert!(config.rejected.is_empty());
        assert_eq!(env_var("storage.compression"), Some("STORAGE_COMPRESSION"));
        assert_eq!(env_var("no.such.key"), None);
    }

    #[test]
    fn booleans_accept_common_spellings() {
        for (text, want) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("false", false),
            ("0", false),
        ] {
            let mut config = Config::default();
            apply_env(&mut config, env(&[("CHECKPOINT_ENABLED", text)])).unwrap();
            assert_eq!(config.checkpoint.enabled, want, "{text}");
        }
    }
}
