//! The PAS v1.1 event (docs/formats.md#pas-event-audit-stream-v11): fields in the original's
//! order, the emitted hash (`sha256` of Go's compact JSON with `event_hash` empty), a stable event id,
//! and the chain a partition belongs to.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::gojson::{GoValue, to_compact, to_indented};
use crate::partition::LedgerRange;
use crate::publish::{DatasetLayout, Manifest, ManifestTable};

pub const EVENT_VERSION: &str = "1.1";
pub const EVENT_TYPE: &str = "bronze_partition";
/// An event recording that a committed partition was replaced (`era.allow_overwrite`): same
/// fields as [`EVENT_TYPE`], describing the new files; the replaced content is the chain's
/// previous event for the same range.
pub const EVENT_TYPE_REPLACED: &str = "bronze_partition_replaced";
pub const PRODUCER_NAME: &str = "bronze-copier";

/// One audit event. Unknown fields are rejected when reading: the hash covers only these, so an
/// added field could never be verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasEvent {
    pub version: String,
    pub event_type: String,
    pub event_id: String,
    /// RFC 3339 with nanoseconds, UTC, trailing zeros trimmed (Go's `time.RFC3339Nano`).
    pub timestamp: String,
    pub partition: EventPartition,
    pub tables: BTreeMap<String, EventTable>,
    pub producer: EventProducer,
    pub chain: EventChain,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventPartition {
    pub network: String,
    pub era_id: String,
    pub version_label: String,
    pub ledger_start: u32,
    pub ledger_end: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTable {
    pub checksum: String,
    pub row_count: i64,
    /// `<network>/<era>/<version>/ledgers_lcm_raw/range=S-E` (no storage prefix).
    pub storage_path: String,
    pub byte_size: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventProducer {
    pub name: String,
    pub version: String,
    pub git_sha: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventChain {
    /// `""` for the first event of a chain.
    pub prev_event_hash: String,
    pub event_hash: String,
}

/// The chain an event belongs to: one per network, era and version label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChainId {
    pub network: String,
    pub era_id: String,
    pub version_label: String,
}

impl ChainId {
    pub fn of_layout(layout: &DatasetLayout) -> Self {
        Self {
            network: layout.network.clone(),
            era_id: layout.era_id.clone(),
            version_label: layout.version_label.clone(),
        }
    }

    /// `<network>/<era_id>/<version_label>`, the key of the original's chain-heads file.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.network, self.era_id, self.version_label)
    }

    /// Whether `event` belongs to this chain.
    pub fn owns(&self, event: &PasEvent) -> bool {
        let p = &event.partition;
        p.network == self.network
            && p.era_id == self.era_id
            && p.version_label == self.version_label
    }
}

impl PasEvent {
    pub fn range(&self) -> Option<LedgerRange> {
        let p = &self.partition;
        (p.ledger_start <= p.ledger_end).then(|| LedgerRange::new(p.ledger_start, p.ledger_end))
    }

    /// The event for a committed partition, chained to `prev_event_hash`, with its hash set.
    pub fn for_partition(
        chain: &ChainId,
        manifest: &Manifest,
        storage_path: &str,
        prev_event_hash: &str,
        now: DateTime<Utc>,
    ) -> PasEvent {
        let range = manifest.range();
        let tables = manifest
            .tables
            .iter()
            .map(|(name, t)| (name.clone(), event_table(t, storage_path)))
            .collect();
        let mut event = PasEvent {
            version: EVENT_VERSION.into(),
            event_type: EVENT_TYPE.into(),
            event_id: event_id(chain, range, manifest),
            timestamp: go_rfc3339_nano(now),
            partition: EventPartition {
                network: chain.network.clone(),
                era_id: chain.era_id.clone(),
                version_label: chain.version_label.clone(),
                ledger_start: range.start,
                ledger_end: range.end,
            },
            tables,
            producer: EventProducer {
                name: PRODUCER_NAME.into(),
                version: crate::VERSION.into(),
                git_sha: crate::GIT_SHA.into(),
            },
            chain: EventChain {
                prev_event_hash: prev_event_hash.into(),
                event_hash: String::new(),
            },
        };
        event.chain.event_hash = event.compute_hash();
        event
    }

    /// The event recording that the partition `manifest` describes replaced what the chain
    /// recorded for its range, chained to `prev_event_hash` (the head). Its id also covers the
    /// head, so replacing A by B and later B by A again gives two ids.
    pub fn replacing(
        chain: &ChainId,
        manifest: &Manifest,
        storage_path: &str,
        prev_event_hash: &str,
        now: DateTime<Utc>,
    ) -> PasEvent {
        let mut event = Self::for_partition(chain, manifest, storage_path, prev_event_hash, now);
        event.event_type = EVENT_TYPE_REPLACED.into();
        let digest = Sha256::digest(format!("{}|{prev_event_hash}", event.event_id).as_bytes());
        event.event_id = format!("pas_evt_{}", hex::encode(&digest[..8]));
        event.chain.event_hash = event.compute_hash();
        event
    }

    /// Whether this event records a replacement.
    pub fn is_replacement(&self) -> bool {
        self.event_type == EVENT_TYPE_REPLACED
    }

    /// The value Go would marshal, fields in struct order.
    pub fn to_go_value(&self) -> GoValue {
        let p = &self.partition;
        let tables = self
            .tables
            .iter()
            .map(|(name, t)| {
                (
                    name.clone(),
                    GoValue::Object(vec![
                        ("checksum".into(), GoValue::str(&t.checksum)),
                        ("row_count".into(), GoValue::Int(t.row_count)),
                        ("storage_path".into(), GoValue::str(&t.storage_path)),
                        ("byte_size".into(), GoValue::Int(t.byte_size)),
                    ]),
                )
            })
            .collect();
        GoValue::Object(vec![
            ("version".into(), GoValue::str(&self.version)),
            ("event_type".into(), GoValue::str(&self.event_type)),
            ("event_id".into(), GoValue::str(&self.event_id)),
            ("timestamp".into(), GoValue::str(&self.timestamp)),
            (
                "partition".into(),
                GoValue::Object(vec![
                    ("network".into(), GoValue::str(&p.network)),
                    ("era_id".into(), GoValue::str(&p.era_id)),
                    ("version_label".into(), GoValue::str(&p.version_label)),
                    ("ledger_start".into(), GoValue::Uint(p.ledger_start.into())),
                    ("ledger_end".into(), GoValue::Uint(p.ledger_end.into())),
                ]),
            ),
            ("tables".into(), GoValue::sorted_object(tables)),
            (
                "producer".into(),
                GoValue::Object(vec![
                    ("name".into(), GoValue::str(&self.producer.name)),
                    ("version".into(), GoValue::str(&self.producer.version)),
                    ("git_sha".into(), GoValue::str(&self.producer.git_sha)),
                ]),
            ),
            (
                "chain".into(),
                GoValue::Object(vec![
                    (
                        "prev_event_hash".into(),
                        GoValue::str(&self.chain.prev_event_hash),
                    ),
                    ("event_hash".into(), GoValue::str(&self.chain.event_hash)),
                ]),
            ),
        ])
    }

    /// Go's `json.Marshal(event)`: the body of the HTTP delivery.
    pub fn to_compact_json(&self) -> String {
        to_compact(&self.to_go_value())
    }

    /// Go's `json.MarshalIndent(event, "", "  ")`: the backup file.
    pub fn to_indented_json(&self) -> String {
        to_indented(&self.to_go_value(), "  ")
    }

    /// The bytes the hash covers: compact JSON with `event_hash` empty.
    pub fn hash_input(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.chain.event_hash.clear();
        unhashed.to_compact_json()
    }

    /// `sha256:<hex>` of [`PasEvent::hash_input`], the original's emitted hash.
    pub fn compute_hash(&self) -> String {
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(self.hash_input().as_bytes()))
        )
    }

    pub fn from_json(bytes: &[u8]) -> Result<PasEvent, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The primary table's entry.
    pub fn primary(&self) -> Option<&EventTable> {
        self.tables.get(crate::config::PRIMARY_TABLE)
    }
}

fn event_table(t: &ManifestTable, storage_path: &str) -> EventTable {
    EventTable {
        checksum: t.checksum.clone(),
        row_count: i64::try_from(t.row_count).unwrap_or(i64::MAX),
        storage_path: storage_path.to_string(),
        byte_size: i64::try_from(t.byte_size).unwrap_or(i64::MAX),
    }
}

/// `pas_evt_` + 16 hex digits, derived from what the event is about (chain, range, Parquet
/// checksum), never from the clock: a retry or restart re-derives the same id for the same
/// partition, so a receiver can de-duplicate on it (it is also the `Idempotency-Key`).
pub fn event_id(chain: &ChainId, range: LedgerRange, manifest: &Manifest) -> String {
    let checksum = manifest
        .primary()
        .map(|t| t.checksum.as_str())
        .unwrap_or("");
    let digest = Sha256::digest(format!("{}|{range}|{checksum}", chain.key()).as_bytes());
    format!("pas_evt_{}", hex::encode(&digest[..8]))
}

/// Go's `time.RFC3339Nano` in UTC: nanoseconds with trailing zeros removed, no fraction at all
/// when it is zero (`2025-11-23T10:00:00.5Z`, `2025-11-23T10:00:00Z`).
pub fn go_rfc3339_nano(t: DateTime<Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let fraction = format!("{nanos:09}");
    format!("{base}.{}Z", fraction.trim_end_matches('0'))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::publish::{ManifestPartition, Producer};
    use chrono::TimeZone;

    pub(crate) fn manifest(start: u32, end: u32, checksum: &str) -> Manifest {
        Manifest {
            partition: ManifestPartition {
                start,
                end,
                era_id: "pre_p23".into(),
                version: "v1".into(),
                network: "testnet".into(),
            },
            tables: BTreeMap::from([(
                "ledgers_lcm_raw".to_string(),
                ManifestTable {
                    file: format!("part-{start}-{end}.parquet"),
                    checksum: checksum.into(),
                    row_count: u64::from(end - start + 1),
                    byte_size: 1234,
                },
            )]),
            producer: Producer::current(),
            created_at: "2025-01-01T00:00:00Z".into(),
            chain: None,
            ingested_at: None,
            network_passphrase: None,
            writer: None,
            archive: None,
            manifest_sha256: None,
        }
    }

    fn chain() -> ChainId {
        ChainId {
            network: "testnet".into(),
            era_id: "pre_p23".into(),
            version_label: "v1".into(),
        }
    }

    #[test]
    fn timestamps_use_gos_trimmed_form() {
        let at = |nanos| go_rfc3339_nano(Utc.timestamp_opt(1_763_892_000, nanos).unwrap());
        assert_eq!(at(0), "2025-11-23T10:00:00Z");
        assert_eq!(at(500_000_000), "2025-11-23T10:00:00.5Z");
        assert_eq!(at(123_456_789), "2025-11-23T10:00:00.123456789Z");
        assert_eq!(at(120), "2025-11-23T10:00:00.00000012Z");
    }

    #[test]
    fn event_id_is_stable_and_specific() {
        let m = manifest(2, 101, "sha256:aa");
        let id = event_id(&chain(), m.range(), &m);
        assert_eq!(id, event_id(&chain(), m.range(), &m.clone()));
        assert!(id.starts_with("pas_evt_") && id.len() == 8 + 16, "{id}");
        let other_range = manifest(102, 201, "sha256:aa");
        let other_file = manifest(2, 101, "sha256:bb");
        let mut other_chain = chain();
        other_chain.version_label = "v2".into();
        for different in [
            event_id(&chain(), other_range.range(), &other_range),
            event_id(&chain(), other_file.range(), &other_file),
            event_id(&other_chain, m.range(), &m),
        ] {
            assert_ne!(id, different);
        }
        // Two events for the same partition made at different times share the id.
        let t1 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let t2 = Utc.timestamp_opt(1_800_000_000, 7).unwrap();
        let a = PasEvent::for_partition(&chain(), &m, "p", "", t1);
        let b = PasEvent::for_partition(&chain(), &m, "p", "", t2);
        assert_eq!(a.event_id, b.event_id);
        assert_ne!(a.chain.event_hash, b.chain.event_hash);
    }

    #[test]
    fn built_event_has_original_fields_and_a_checking_hash() {
        let m = manifest(2, 101, "sha256:aa");
        let t = Utc.timestamp_opt(1_763_892_000, 0).unwrap();
        let e = PasEvent::for_partition(
            &chain(),
            &m,
            "testnet/pre_p23/v1/ledgers_lcm_raw/range=2-101",
            "sha256:prev",
            t,
        );
        assert_eq!(e.version, "1.1");
        assert_eq!(e.event_type, "bronze_partition");
        assert_eq!(e.chain.prev_event_hash, "sha256:prev");
        assert_eq!(e.chain.event_hash, e.compute_hash());
        assert_eq!(e.producer.git_sha, crate::GIT_SHA);
        let t = e.primary().unwrap();
        assert_eq!((t.row_count, t.byte_size), (100, 1234));
        let compact = e.to_compact_json();
        let order: Vec<usize> = [
            "\"version\"",
            "\"event_type\"",
            "\"event_id\"",
            "\"timestamp\"",
            "\"partition\"",
            "\"tables\"",
            "\"producer\"",
            "\"chain\"",
        ]
        .iter()
        .map(|k| compact.find(k).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{compact}");
        // The indented file parses back to the same event.
        assert_eq!(
            PasEvent::from_json(e.to_indented_json().as_bytes()).unwrap(),
            e
        );
    }

    #[test]
    fn any_field_change_changes_the_hash() {
        let m = manifest(2, 101, "sha256:aa");
        let e = PasEvent::for_partition(&chain(), &m, "p", "", Utc::now());
        let mut changed = vec![];
        let mut x = e.clone();
        x.timestamp.push('Z');
        changed.push(x);
        let mut x = e.clone();
        x.partition.ledger_end += 1;
        changed.push(x);
        let mut x = e.clone();
        x.tables.get_mut("ledgers_lcm_raw").unwrap().row_count += 1;
        changed.push(x);
        let mut x = e.clone();
        x.chain.prev_event_hash = "sha256:x".into();
        changed.push(x);
        for x in changed {
            assert_ne!(x.compute_hash(), e.chain.event_hash);
        }
        let mut x = e.clone();
        x.chain.event_hash = "anything".into();
        assert_eq!(
            x.compute_hash(),
            e.chain.event_hash,
            "event_hash is not hashed"
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let m = manifest(2, 101, "sha256:aa");
        let e = PasEvent::for_partition(&chain(), &m, "p", "", Utc::now());
        let text = e.to_indented_json().replacen('{', "{\"extra\": 1,", 1);
        assert!(PasEvent::from_json(text.as_bytes()).is_err());
    }
}
