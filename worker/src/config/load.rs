//! Loading: `-config` file, else `CONFIG_FILE`, else defaults; then environment overrides.

use std::path::{Path, PathBuf};

use super::Config;
use super::choice::{CHOICE_KEYS, Rejected};
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

/// Parses YAML text into a config, collecting the keys that were not used. A closed-set value
/// that names no choice (`storage.backend: ftp`) is not a parse error: it is kept in
/// `Config::rejected` so `-validate` reports it with every other problem of the file.
pub fn parse_yaml(text: &str) -> Result<(Config, Vec<String>), String> {
    if text.trim().is_empty() {
        return Ok((Config::default(), Vec::new()));
    }
    let (config, mut ignored) = match deserialize(text) {
        Ok(parsed) => parsed,
        Err(first) => {
            let Some((reduced, rejected)) = without_bad_choices(text) else {
                return Err(every_bad_field(text, first));
            };
            // Anything else wrong makes it a parse error, listing the bad choices too.
            let Ok((mut config, ignored)) = deserialize(&reduced) else {
                return Err(every_bad_field(text, first));
            };
            config.rejected = rejected;
            (config, ignored)
        }
    };
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

fn deserialize(text: &str) -> Result<(Config, Vec<String>), String> {
    let mut ignored = Vec::new();
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    let config: Config = serde_ignored::deserialize(deserializer, |path| {
        ignored.push(path.to_string());
    })
    .map_err(|e| e.to_string())?;
    Ok((config, ignored))
}

/// The document without its closed-set values that name no choice, and those values by key;
/// `None` when there are none (or the text is not YAML).
fn without_bad_choices(text: &str) -> Option<(String, Rejected)> {
    let mut doc = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).ok()?;
    let mut rejected = Rejected::new();
    for (key, names_a_choice) in CHOICE_KEYS {
        let Some(value) = field(&doc, key) else {
            continue;
        };
        let text = match value {
            serde_yaml_ng::Value::String(s) => s.clone(),
            serde_yaml_ng::Value::Number(n) => n.to_string(),
            serde_yaml_ng::Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        if !names_a_choice(&text) {
            remove_field(&mut doc, key);
            rejected.insert(key.to_string(), text);
        }
    }
    if rejected.is_empty() {
        return None;
    }
    Some((serde_yaml_ng::to_string(&doc).ok()?, rejected))
}

/// The value at dotted `path`, if any.
fn field<'a>(doc: &'a serde_yaml_ng::Value, path: &str) -> Option<&'a serde_yaml_ng::Value> {
    path.split('.').try_fold(doc, |node, key| node.get(key))
}

/// At most this many bad fields are listed for one file.
const MAX_FIELD_ERRORS: usize = 50;

/// All the type errors of a file, not just the first that serde stops at: each bad field is
/// taken out of the document and the rest parsed again, until it parses. `first` (with its
/// line and column) leads; the later ones name their field without a position, since they come
/// from the reduced document. A syntax error stays the only message.
fn every_bad_field(text: &str, first: String) -> String {
    let Ok(mut doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) else {
        return first;
    };
    let mut messages = vec![first.clone()];
    let mut current = first;
    while messages.len() < MAX_FIELD_ERRORS {
        let Some(field) = error_field(&current) else {
            break;
        };
        if !remove_field(&mut doc, field) {
            break;
        }
        let Ok(reduced) = serde_yaml_ng::to_string(&doc) else {
            break;
        };
        match serde_yaml_ng::from_str::<Config>(&reduced) {
            Ok(_) => break,
            Err(e) => {
                current = e.to_string();
                messages.push(strip_position(&current).to_string());
            }
        }
    }
    if messages.len() == 1 {
        return messages.remove(0);
    }
    format!(
        "{} bad fields:\n  {}",
        messages.len(),
        messages.join("\n  ")
    )
}

/// The dotted field path serde_yaml puts before its message (`era.partition_size: invalid
/// type...`), if any.
fn error_field(message: &str) -> Option<&str> {
    let (field, _) = message.split_once(": ")?;
    let plain = !field.is_empty()
        && field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    plain.then_some(field)
}

/// Drops ` at line L column C` from a serde_yaml message.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => &message[..i],
        _ => message,
    }
}

/// Removes the mapping entry at dotted `path`; whether there was one.
fn remove_field(doc: &mut serde_yaml_ng::Value, path: &str) -> bool {
    let mut node = doc;
    let mut keys = path.split('.').peekable();
    while let Some(key) = keys.next() {
        let Some(map) = node.as_mapping_mut() else {
            return false;
        };
        if keys.peek().is_none() {
            return map.remove(key).is_some();
        }
        let Some(child) = map.get_mut(key) else {
            return false;
        };
        node = child;
    }
    false
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
        assert_eq!(
            config.source.datastore_type,
            Some(crate::config::DatastoreType::Gcs)
        );
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
    fn every_bad_field_of_a_file_is_reported_not_just_the_first() {
        let err = parse_yaml(
            "era:\n  partition_size: big\n  ledger_start: -3\nperf:\n  workers: many\nmetrics:\n  enabled: maybe\n",
        )
        .unwrap_err();
        for field in [
            "era.partition_size",
            "era.ledger_start",
            "perf.workers",
            "metrics.enabled",
        ] {
            assert!(err.contains(field), "{field} missing from: {err}");
        }
        assert!(err.starts_with("4 bad fields:"), "{err}");
        // The first keeps its position in the file.
        assert!(err.contains("line 2 column"), "{err}");
        // A syntax error is reported once, as it is.
        let err = parse_yaml("era: [\n").unwrap_err();
        assert!(!err.contains("bad fields"), "{err}");
    }

    #[test]
    fn a_value_naming_no_choice_is_kept_for_validation_not_a_parse_error() {
        let (config, ignored) = parse_yaml(
            "storage:\n  backend: ftp\n  compression: ZSTD\nlogging:\n  format: xml\n  level: 5\n",
        )
        .unwrap();
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(config.rejected.get("storage.backend").unwrap(), "ftp");
        assert_eq!(config.rejected.get("logging.format").unwrap(), "xml");
        assert_eq!(config.rejected.get("logging.level").unwrap(), "5");
        assert_eq!(config.rejected.len(), 3, "{:?}", config.rejected);
        assert_eq!(config.storage.compression, crate::config::Compression::Zstd);
        // With a type error as well, the file is a parse error naming both.
        let err = parse_yaml("storage:\n  backend: ftp\nera:\n  ledger_start: x\n").unwrap_err();
        assert!(
            err.contains("storage.backend") && err.contains("era.ledger_start"),
            "{err}"
        );
        assert!(err.contains("must be one of: local, gcs, s3"), "{err}");
    }

    #[test]
    fn typed_values_load_with_the_runbook_spellings() {
        let (config, _) = parse_yaml(
            "source:\n  mode: datastore\n  datastore_type: \"\"\npas:\n  outbox: storage\n",
        )
        .unwrap();
        assert_eq!(config.source.mode, crate::config::SourceMode::Datastore);
        assert_eq!(config.source.datastore_type, None, "empty means unset");
        assert_eq!(config.pas.outbox, crate::config::PasOutbox::Storage);
        assert!(config.rejected.is_empty());
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
