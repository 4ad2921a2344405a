//! The closed sets of the config (`source.mode`, `storage.backend`, `storage.compression`, ...):
//! one enum each, shared by the YAML file, the environment variables and the operator's CRD.
//!
//! Each enum reads and writes the runbook's spelling (serde and [`FromStr`]/[`Display`]), and
//! describes itself to the CRD as `{type: string, enum: [...]}` with exactly those spellings.
//! A value that names none of them is not a parse error: [`super::Config`] keeps it as written
//! (see [`Rejected`]) so `-validate` reports it with every other problem, naming key, value and
//! the allowed values.
//!
//! Adding a closed set is one [`choice!`] block, one field, one `ENV_VARS` entry (with
//! `choose`), one line in [`CHOICE_KEYS`] and, for the operator, one line in its `worker_env`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Why a text names no value of a closed set: `must be one of: a, b, c` (the wording `-validate`
/// prints).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnknownChoice(pub &'static str);

/// A closed set of config values.
pub trait Choice: FromStr<Err = UnknownChoice> + fmt::Display + Copy + 'static {
    /// Every value, in the documented order.
    const ALL: &'static [Self];
}

/// Parses inside the deserializer (not after it returns), so a YAML error carries the field's
/// full path (`storage.backend: must be one of: ...`) and position.
struct ChoiceVisitor<T>(std::marker::PhantomData<T>);

impl<T: Choice> serde::de::Visitor<'_> for ChoiceVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = T::ALL.iter().map(ToString::to_string).collect();
        write!(f, "one of: {}", all.join(", "))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
        text.parse().map_err(E::custom)
    }
}

/// Defines one closed set. `ci` makes parsing case-insensitive (as the worker always accepted
/// for these keys); `alias` adds accepted spellings that are written back canonically.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        $name:ident ($case:ident, $message:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// The runbook's spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }
        }

        impl Choice for $name {
            const ALL: &'static [Self] = &[$( $name::$variant ),+];
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownChoice;

            fn from_str(text: &str) -> Result<Self, UnknownChoice> {
                $(
                    if choice!(@eq $case, text, $text) $(|| choice!(@eq $case, text, $alias))* {
                        return Ok($name::$variant);
                    }
                )+
                Err(UnknownChoice($message))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(ChoiceVisitor::<$name>(std::marker::PhantomData))
            }
        }

        // Written by hand so the CRD's OpenAPI enum is exactly the canonical spellings (aliases
        // are the worker's leniency, not part of the API).
        impl schemars::JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "enum": [$( $text ),+] })
            }
        }
    };
    (@eq exact, $text:expr, $want:literal) => { $text == $want };
    (@eq ci, $text:expr, $want:literal) => { $text.eq_ignore_ascii_case($want) };
}

choice! {
    /// `source.mode`. All of them read a Galexie (SEP-54) datastore.
    SourceMode(exact, "must be one of: local, gcs, s3, datastore") {
        Local = "local",
        Gcs = "gcs",
        S3 = "s3",
        /// `source.datastore_type` and `source.datastore_path` name it.
        Datastore = "datastore",
    }
}

choice! {
    /// `source.datastore_type` (mode `datastore`).
    DatastoreType(ci, "must be GCS or S3") {
        Gcs = "GCS",
        S3 = "S3",
    }
}

choice! {
    /// `storage.backend`.
    StorageBackend(exact, "must be one of: local, gcs, s3") {
        Local = "local",
        Gcs = "gcs",
        S3 = "s3",
    }
}

choice! {
    /// `storage.compression`: the Parquet codec.
    Compression(ci, "must be one of: zstd, snappy, lz4, gzip, none") {
        Zstd = "zstd",
        Snappy = "snappy",
        Lz4 = "lz4",
        Gzip = "gzip",
        None = "none" | "uncompressed",
    }
}

choice! {
    /// `storage.table_format`: what, besides the manifests, makes the dataset a table.
    TableFormat(ci, "must be none or delta") {
        /// Only Parquet files and `_manifest.json` (the output is exactly as without the key).
        None = "none",
        /// A Delta Lake log, `_delta_log/`, with one commit per committed partition.
        Delta = "delta",
    }
}

choice! {
    /// `pas.outbox`: where events are kept before delivery.
    PasOutbox(exact, "must be one of: file, storage") {
        /// In `pas.backup_dir` (the runbook's layout).
        File = "file",
        /// Objects under `<storage prefix>_pas/` in the output storage, created conditionally
        /// (what the Kubernetes operator writes).
        Storage = "storage",
    }
}

choice! {
    /// `logging.format`.
    LogFormat(ci, "must be text or json") {
        Text = "text",
        Json = "json",
    }
}

choice! {
    /// `logging.level`.
    LogLevel(ci, "must be trace, debug, info, warn or error") {
        Trace = "trace",
        Debug = "debug",
        Info = "info",
        Warn = "warn" | "warning",
        Error = "error",
    }
}

/// Values of closed-set keys that named no choice, as written (`storage.backend` -> `ftp`), by
/// config key. The key's field keeps its default; [`super::validate`] reports every entry, so a
/// config with one never runs.
pub type Rejected = BTreeMap<String, String>;

/// Whether a text names a value of one closed set.
type NamesAChoice = fn(&str) -> bool;

/// Every closed-set key of the YAML file, with the check of its text. An empty
/// `source.datastore_type` means unset, as it always did.
pub(super) const CHOICE_KEYS: &[(&str, NamesAChoice)] = &[
    ("source.mode", names::<SourceMode>),
    ("source.datastore_type", |t| {
        t.is_empty() || names::<DatastoreType>(t)
    }),
    ("storage.backend", names::<StorageBackend>),
    ("storage.compression", names::<Compression>),
    ("storage.table_format", names::<TableFormat>),
    ("pas.outbox", names::<PasOutbox>),
    ("logging.format", names::<LogFormat>),
    ("logging.level", names::<LogLevel>),
];

fn names<T: Choice>(text: &str) -> bool {
    text.parse::<T>().is_ok()
}

/// `source.datastore_type` in YAML: empty means unset.
pub(super) mod optional_datastore_type {
    use super::DatastoreType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<DatastoreType>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.map_or("", DatastoreType::as_str))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DatastoreType>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(t) if t.is_empty() => Ok(None),
            Some(t) => t.parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T>()
    where
        T: Choice + PartialEq + fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
    {
        for value in T::ALL {
            assert_eq!(value.to_string().parse::<T>().unwrap(), *value);
            let yaml = serde_yaml_ng::to_string(value).unwrap();
            assert_eq!(serde_yaml_ng::from_str::<T>(&yaml).unwrap(), *value);
        }
    }

    #[test]
    fn every_choice_round_trips_through_display_and_serde() {
        round_trips::<SourceMode>();
        round_trips::<DatastoreType>();
        round_trips::<StorageBackend>();
        round_trips::<Compression>();
        round_trips::<PasOutbox>();
        round_trips::<LogFormat>();
        round_trips::<LogLevel>();
    }

    #[test]
    fn spellings_the_worker_always_accepted_still_parse() {
        assert_eq!("gcs".parse(), Ok(DatastoreType::Gcs));
        assert_eq!("ZSTD".parse(), Ok(Compression::Zstd));
        assert_eq!("uncompressed".parse(), Ok(Compression::None));
        assert_eq!("WARNING".parse(), Ok(LogLevel::Warn));
        assert_eq!("JSON".parse(), Ok(LogFormat::Json));
        // Modes and backends were always exact.
        assert!("Local".parse::<SourceMode>().is_err());
        assert!("S3".parse::<StorageBackend>().is_err());
    }

    #[test]
    fn an_unknown_value_is_an_error_listing_the_allowed_ones() {
        let err = "ftp".parse::<StorageBackend>().unwrap_err();
        assert_eq!(err.to_string(), "must be one of: local, gcs, s3");
        let err = serde_yaml_ng::from_str::<Compression>("brotli").unwrap_err();
        assert!(
            err.to_string()
                .contains("must be one of: zstd, snappy, lz4, gzip, none"),
            "{err}"
        );
    }

    #[test]
    fn the_schema_lists_exactly_the_canonical_spellings() {
        let schema = schemars::schema_for!(Compression);
        let values: Vec<&str> = schema
            .get("enum")
            .and_then(|v| v.as_array())
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(values, ["zstd", "snappy", "lz4", "gzip", "none"]);
    }
}
