//! The datastore's layout (SEP-54 / Galexie): `.config.json` and object keys, as pure functions.
//!
//! Keys are computed, never listed: partition folder `%08X--start-end/` (hex of
//! `0xFFFFFFFF - partitionStart`) when a partition holds more than one batch, then the file
//! `%08X--start[-end].xdr.<ext>` (hex of `0xFFFFFFFF - batchStart`, `-end` only when a batch holds
//! more than one ledger).

use serde::{Deserialize, Serialize};

/// The datastore's own description, stored at `<root>/.config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatastoreManifest {
    pub network_passphrase: String,
    #[serde(default)]
    pub version: String,
    #[serde(default = "default_compression")]
    pub compression: String,
    pub ledgers_per_batch: u32,
    pub batches_per_partition: u32,
}

fn default_compression() -> String {
    "zstd".into()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error("datastore .config.json: ledgersPerBatch must be >= 1 (got {0})")]
    ZeroLedgersPerBatch(u32),
    #[error("datastore .config.json: batchesPerPartition must be >= 1 (got {0})")]
    ZeroBatchesPerPartition(u32),
    #[error("datastore .config.json: compression {0:?} is not supported (only zstd)")]
    UnsupportedCompression(String),
    #[error(
        "datastore .config.json: partition size ledgersPerBatch × batchesPerPartition overflows"
    )]
    PartitionOverflow,
}

/// Object naming of one datastore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatastoreSchema {
    pub ledgers_per_batch: u32,
    pub batches_per_partition: u32,
}

/// One batch object: the ledgers it holds and its key (without the extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchObject {
    pub start: u32,
    pub end: u32,
    /// Key relative to the datastore root, without the `.xdr.zst` extension.
    pub stem: String,
}

/// File extensions a zstd batch may carry: the current one first, then the older spelling.
pub const ZSTD_EXTENSIONS: [&str; 2] = ["xdr.zst", "xdr.zstd"];

impl DatastoreSchema {
    pub fn from_manifest(m: &DatastoreManifest) -> Result<Self, SchemaError> {
        if !matches!(m.compression.as_str(), "zstd" | "zst") {
            return Err(SchemaError::UnsupportedCompression(m.compression.clone()));
        }
        Self::new(m.ledgers_per_batch, m.batches_per_partition)
    }

    pub fn new(ledgers_per_batch: u32, batches_per_partition: u32) -> Result<Self, SchemaError> {
        if ledgers_per_batch == 0 {
            return Err(SchemaError::ZeroLedgersPerBatch(ledgers_per_batch));
        }
        if batches_per_partition == 0 {
            return Err(SchemaError::ZeroBatchesPerPartition(batches_per_partition));
        }
        ledgers_per_batch
            .checked_mul(batches_per_partition)
            .ok_or(SchemaError::PartitionOverflow)?;
        Ok(Self {
            ledgers_per_batch,
            batches_per_partition,
        })
    }

    /// The batch holding `seq`.
    pub fn batch_for(&self, seq: u32) -> BatchObject {
        let start = seq - seq % self.ledgers_per_batch;
        let end = start.saturating_add(self.ledgers_per_batch - 1);
        let mut stem = String::with_capacity(48);
        if self.batches_per_partition > 1 {
            let size = self.ledgers_per_batch * self.batches_per_partition;
            let p_start = seq - seq % size;
            let p_end = p_start.saturating_add(size - 1);
            stem.push_str(&format!("{:08X}--{p_start}-{p_end}/", u32::MAX - p_start));
        }
        stem.push_str(&format!("{:08X}--{start}", u32::MAX - start));
        if start != end {
            stem.push_str(&format!("-{end}"));
        }
        BatchObject { start, end, stem }
    }

    /// The first batch covering `[first, last]` whose start is not in `present` (the batch starts
    /// found in the datastore), in ledger order.
    pub fn first_absent(
        &self,
        first: u32,
        last: u32,
        present: &std::collections::BTreeSet<u32>,
    ) -> Option<BatchObject> {
        self.batches_covering(first, last)
            .find(|b| !present.contains(&b.start))
    }

    /// The partition folders (without the trailing `/`) holding the batches of `[first, last]`,
    /// in ledger order; empty when batches sit at the datastore's root (one batch per partition).
    pub fn folders_covering(&self, first: u32, last: u32) -> Vec<String> {
        if self.batches_per_partition <= 1 {
            return Vec::new();
        }
        let size = self.ledgers_per_batch * self.batches_per_partition;
        let mut folders = Vec::new();
        let mut start = Some(first - first % size);
        while let Some(p) = start.filter(|p| *p <= last) {
            let stem = self.batch_for(p).stem;
            folders.push(stem[..stem.find('/').unwrap_or(stem.len())].to_string());
            start = p.checked_add(size);
        }
        folders
    }

    /// The batches covering `[first, last]`, in ledger order.
    pub fn batches_covering(
        &self,
        first: u32,
        last: u32,
    ) -> impl Iterator<Item = BatchObject> + '_ {
        let mut next = Some(first);
        std::iter::from_fn(move || {
            let seq = next?;
            if seq > last {
                return None;
            }
            let batch = self.batch_for(seq);
            next = batch.end.checked_add(1);
            Some(batch)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn galexie_pubnet_keys_match_real_bucket_names() {
        let schema = DatastoreSchema::new(1, 64_000).unwrap();
        // Names from the original implementation's documentation and a real bucket.
        assert_eq!(
            schema.batch_for(59_957_913).stem,
            "FC6DEFFF--59904000-59967999/FC6D1D66--59957913"
        );
        assert_eq!(
            schema.batch_for(997).stem,
            "FFFFFFFF--0-63999/FFFFFC1A--997"
        );
        assert_eq!(
            schema.batch_for(53_312_000).stem,
            "FCD285FF--53312000-53375999/FCD285FF--53312000"
        );
    }

    #[test]
    fn multi_ledger_batches_carry_their_end() {
        let schema = DatastoreSchema::new(64, 10).unwrap();
        let b = schema.batch_for(130);
        assert_eq!((b.start, b.end), (128, 191));
        assert_eq!(
            b.stem,
            format!("{:08X}--0-639/{:08X}--128-191", u32::MAX, u32::MAX - 128)
        );
    }

    #[test]
    fn one_batch_per_partition_has_no_folder() {
        let schema = DatastoreSchema::new(1, 1).unwrap();
        assert_eq!(schema.batch_for(5).stem, "FFFFFFFA--5");
    }

    #[test]
    fn batches_covering_a_range_are_contiguous_and_cover_it_exactly() {
        let schema = DatastoreSchema::new(64, 10).unwrap();
        let batches: Vec<_> = schema.batches_covering(100, 300).collect();
        assert_eq!(batches.first().unwrap().start, 64);
        assert_eq!(batches.last().unwrap().end, 319);
        for pair in batches.windows(2) {
            assert_eq!(pair[0].end + 1, pair[1].start);
        }
    }

    #[test]
    fn the_first_absent_batch_is_the_lowest_gap_in_ledger_order() {
        let schema = DatastoreSchema::new(2, 4).unwrap(); // partitions of 8 ledgers
        let present: std::collections::BTreeSet<u32> = [10, 12, 16, 18].into();
        // 14-15 is missing; 20-21 too, but later.
        let gap = schema.first_absent(10, 21, &present).unwrap();
        assert_eq!((gap.start, gap.end), (14, 15));
        assert_eq!(
            gap.stem,
            format!("{:08X}--8-15/{:08X}--14-15", u32::MAX - 8, u32::MAX - 14)
        );
        // A range inside a batch is covered by that batch.
        assert_eq!(schema.first_absent(11, 13, &present), None);
        assert_eq!(schema.first_absent(16, 19, &present), None);
        assert_eq!(schema.first_absent(20, 20, &present).unwrap().start, 20);
        assert_eq!(
            schema.folders_covering(10, 21),
            [
                format!("{:08X}--8-15", u32::MAX - 8),
                format!("{:08X}--16-23", u32::MAX - 16)
            ]
        );
        assert_eq!(
            schema.folders_covering(u32::MAX - 1, u32::MAX).len(),
            1,
            "terminates at the top"
        );
        assert!(
            DatastoreSchema::new(1, 1)
                .unwrap()
                .folders_covering(1, 100)
                .is_empty()
        );
    }

    #[test]
    fn covering_the_last_ledger_terminates() {
        let schema = DatastoreSchema::new(1, 64_000).unwrap();
        let batches: Vec<_> = schema.batches_covering(u32::MAX - 1, u32::MAX).collect();
        assert_eq!(batches.len(), 2);
    }

    #[test]
    fn config_json_parses_and_rejects_unknown_compression() {
        let m: DatastoreManifest = serde_json::from_str(
            r#"{"networkPassphrase":"Test SDF Network ; September 2015","version":"1.0","compression":"zstd","ledgersPerBatch":1,"batchesPerPartition":64000}"#,
        )
        .unwrap();
        assert_eq!(
            DatastoreSchema::from_manifest(&m).unwrap(),
            DatastoreSchema::new(1, 64_000).unwrap()
        );
        let lz = DatastoreManifest {
            compression: "lz4".into(),
            ..m
        };
        assert_eq!(
            DatastoreSchema::from_manifest(&lz),
            Err(SchemaError::UnsupportedCompression("lz4".into()))
        );
        assert_eq!(
            DatastoreSchema::new(0, 1),
            Err(SchemaError::ZeroLedgersPerBatch(0))
        );
    }
}
