//! Loading: `-config` file, else `CONFIG_FILE`, else defaults; then environment overrides.

use std::path::{Path, PathBuf};

use super::Config;
use super::env::{EnvOverrides, apply_env};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config: cannot parse config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: bad environment variable(s):\n  {}", .0.join("\n  "))]
    Env(Vec<String>),
}

/// A config together with where its values came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// Keys in the file that Bronze does not use (typos, or keys of the old implementation that
    /// mean nothing any more). Reported as warnings.
    pub ignored_keys: Vec<String>,
    pub env: EnvOverrides,
}

/// Loads the config from `file` (or `CONFIG_FILE` from `lookup` when `file` is `None`), then
/// applies environment overrides from `lookup`.
pub fn load_config(
    file: Option<&Path>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<LoadedConfig, ConfigError> {
    let file = file.map(Path::to_path_buf).or_else(|| {
        lookup("CONFIG_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let (mut config, ignored_keys) = match &file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            parse_yaml(&text).map_err(|message| ConfigError::Parse {
                path: path.clone(),
                message,
            })?
        }
        None => (Config::default(), Vec::new()),
    };
    let env = apply_env(&mut config, lookup).map_err(ConfigError::Env)?;
    Ok(LoadedConfig {
        config,
        file,
        ignored_keys,
        env,
    })
}

/// Parses YAML text into a config, collecting the keys that were not used.
pub fn parse_yaml(text: &str) -> Result<(Config, Vec<String>), String> {
    if text.trim().is_empty() {
        return Ok((Config::default(), Vec::new()));
    }
    let mut ignored = Vec::new();
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    let config: Config = serde_ignored::deserialize(deserializer, |path| {
        ignored.push(path.to_string());
    })
    .map_err(|e| e.to_string())?;
    for legacy in ["eras", "active_eras"] {
        let present = match legacy {
            "eras" => config.eras.is_some(),
            _ => config.active_eras.is_some(),
        };
        if present {
            ignored.push(format!(
                "{legacy} (multi-era routing is not supported; only `era` is used)"
            ));
        }
    }
    if config.catalog.namespace.is_some() {
        ignored.push("catalog.namespace (unused)".into());
    }
    Ok((config, ignored))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const RUNBOOK_TESTNET: &str = r#"
copier_id: "bronze-copier-testnet-001"
era:
  era_id: "pre_p23"
  version_label: "v1"
  network: "testnet"
  ledger_start: 1
  ledger_end: 0  # 0 = run until end of available data
  partition_size: 10000
source:
  mode: "datastore"
  datastore_type: "GCS"
  datastore_path: "obsrvr-stellar-ledger-data-testnet-data/landing/ledgers/testnet"
storage:
  backend: "local"
  local_dir: "/data/bronze"
checkpoint:
  enabled: true
  dir: "/data/state"
pas:
  enabled: true
  backup_dir: "/data/pas-backup"
perf:
  max_in_flight_partitions: 4
"#;

    #[test]
    fn runbook_testnet_example_parses_with_every_value() {
        let (config, ignored) = parse_yaml(RUNBOOK_TESTNET).unwrap();
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(config.copier_id, "bronze-copier-testnet-001");
        assert_eq!(config.era.network, "testnet");
        assert_eq!(config.era.ledger_start, 1);
        assert!(config.follows_tip());
        assert_eq!(config.source.datastore_type, "GCS");
        assert_eq!(config.storage.local_dir, "/data/bronze");
        assert!(config.pas.enabled);
        assert_eq!(config.perf.max_in_flight_partitions, 4);
        // Defaults fill what the file leaves out.
        assert_eq!(config.storage.prefix, "bronze/");
        assert_eq!(config.bronze.primary_table, "ledgers_lcm_raw");
    }

    #[test]
    fn unknown_and_legacy_keys_are_reported_not_fatal() {
        let (config, ignored) =
            parse_yaml("era:\n  netwrok: testnet\neras: []\ncatalog:\n  namespace: mainnet\n")
                .unwrap();
        assert_eq!(config.era.network, "pubnet");
        assert!(ignored.iter().any(|k| k == "era.netwrok"), "{ignored:?}");
        assert!(ignored.iter().any(|k| k.starts_with("eras")), "{ignored:?}");
        assert!(
            ignored.iter().any(|k| k.starts_with("catalog.namespace")),
            "{ignored:?}"
        );
    }

    #[test]
    fn type_errors_name_the_key() {
        let err = parse_yaml("era:\n  ledger_start: banana\n").unwrap_err();
        assert!(err.contains("ledger_start"), "{err}");
    }

    #[test]
    fn config_file_env_var_is_used_when_no_flag_and_env_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, RUNBOOK_TESTNET).unwrap();
        let path_text = path.to_string_lossy().to_string();
        let lookup = move |k: &str| match k {
            "CONFIG_FILE" => Some(path_text.clone()),
            "MAX_IN_FLIGHT_PARTITIONS" => Some("8".to_string()),
            _ => None,
        };
        let loaded = load_config(None, lookup).unwrap();
        assert_eq!(loaded.file.as_deref(), Some(path.as_path()));
        assert_eq!(loaded.config.copier_id, "bronze-copier-testnet-001");
        assert_eq!(loaded.config.perf.max_in_flight_partitions, 8);
    }

    #[test]
    fn missing_file_is_a_read_error_naming_the_path() {
        let err = load_config(Some(Path::new("/nonexistent/bronze.yaml")), no_env).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/bronze.yaml"),
            "{err}"
        );
    }
}
