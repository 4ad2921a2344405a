//! Output paths (docs/formats.md#layout):
//! `<prefix><network>/<era_id>/<version_label>/ledgers_lcm_raw/range=S-E/{part-S-E.parquet,_manifest.json}`.

use crate::config::{Config, PRIMARY_TABLE};
use crate::partition::LedgerRange;

pub const MANIFEST_FILE: &str = "_manifest.json";
/// See [`DatasetLayout::rebuild_marker_key`].
pub const REBUILD_MARKER_FILE: &str = "_rebuild.json";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetLayout {
    /// Normalized storage prefix (`bronze/` or empty).
    pub prefix: String,
    pub network: String,
    pub era_id: String,
    pub version_label: String,
}

impl DatasetLayout {
    pub fn from_config(config: &Config) -> Self {
        Self {
            prefix: config.storage_prefix(),
            network: config.era.network.clone(),
            era_id: config.era.era_id.clone(),
            version_label: config.era.version_label.clone(),
        }
    }

    /// `<network>/<era>/<version>/<table>/range=S-E`: the partition's path without the prefix,
    /// as the PAS event and the catalog record it.
    pub fn storage_path(&self, range: LedgerRange) -> String {
        format!(
            "{}/{}/{}/{PRIMARY_TABLE}/range={range}",
            self.network, self.era_id, self.version_label
        )
    }

    /// The dataset folder, relative to the storage root.
    pub fn dataset_dir(&self) -> String {
        format!(
            "{}{}/{}/{}/{PRIMARY_TABLE}",
            self.prefix, self.network, self.era_id, self.version_label
        )
    }

    /// The partition folder, relative to the storage root.
    pub fn partition_dir(&self, range: LedgerRange) -> String {
        format!("{}{}", self.prefix, self.storage_path(range))
    }

    pub fn parquet_file_name(range: LedgerRange) -> String {
        format!("part-{range}.parquet")
    }

    pub fn parquet_key(&self, range: LedgerRange) -> String {
        format!(
            "{}/{}",
            self.partition_dir(range),
            Self::parquet_file_name(range)
        )
    }

    /// Where the new Parquet file of a committed partition being replaced
    /// (`era.allow_overwrite`) is built: beside the committed one, under a name no reader's
    /// `*.parquet` matches, until every check has passed and it is moved into place.
    pub fn replacement_key(&self, range: LedgerRange) -> String {
        format!("{}.replacing", self.parquet_key(range))
    }

    /// A rebuild's marker (`spec.rebuild` of the operator): the manifest of the partition rebuilt
    /// at [`Self::replacement_key`], waiting for the sequencer to check it and swap it in.
    pub fn rebuild_marker_key(&self, range: LedgerRange) -> String {
        format!("{}/{REBUILD_MARKER_FILE}", self.partition_dir(range))
    }

    pub fn manifest_key(&self, range: LedgerRange) -> String {
        format!("{}/{MANIFEST_FILE}", self.partition_dir(range))
    }

    /// Parses `range=S-E` folder names back into ranges.
    pub fn parse_partition_dir_name(name: &str) -> Option<LedgerRange> {
        name.strip_prefix("range=")?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(prefix: &str) -> DatasetLayout {
        let mut c = Config::default();
        c.storage.prefix = prefix.into();
        c.era.network = "testnet".into();
        DatasetLayout::from_config(&c)
    }

    #[test]
    fn paths_match_the_original_layout() {
        let l = layout("bronze/");
        let r = LedgerRange::new(2, 1001);
        assert_eq!(
            l.parquet_key(r),
            "bronze/testnet/pre_p23/v1/ledgers_lcm_raw/range=2-1001/part-2-1001.parquet"
        );
        assert_eq!(
            l.manifest_key(r),
            "bronze/testnet/pre_p23/v1/ledgers_lcm_raw/range=2-1001/_manifest.json"
        );
        assert_eq!(
            l.storage_path(r),
            "testnet/pre_p23/v1/ledgers_lcm_raw/range=2-1001"
        );
    }

    #[test]
    fn a_prefix_without_slash_still_makes_a_folder() {
        assert_eq!(
            layout("bronze").dataset_dir(),
            "bronze/testnet/pre_p23/v1/ledgers_lcm_raw"
        );
        assert_eq!(
            layout("").dataset_dir(),
            "testnet/pre_p23/v1/ledgers_lcm_raw"
        );
    }

    #[test]
    fn range_folder_names_round_trip() {
        assert_eq!(
            DatasetLayout::parse_partition_dir_name("range=2-1001"),
            Some(LedgerRange::new(2, 1001))
        );
        assert_eq!(DatasetLayout::parse_partition_dir_name("range=9-1"), None);
        assert_eq!(
            DatasetLayout::parse_partition_dir_name("part-1-2.parquet"),
            None
        );
    }
}
