//! Output paths (docs/formats.md#layout):
//! `<prefix><network>/<era_id>/<version_label>/ledgers_lcm_raw/range=S-E/{part-S-E.parquet,_manifest.json}`.

use crate::config::{Config, PRIMARY_TABLE};
use crate::partition::LedgerRange;

pub const MANIFEST_FILE: &str = "_manifest.json";
/// See [`DatasetLayout::rebuild_marker_key`].
pub const REBUILD_MARKER_FILE: &str = "_rebuild.json";
/// Hex digits of the file's sha256 in a replacement's file name
/// ([`DatasetLayout::replacement_file_name`]).
pub const REPLACEMENT_TAG_LEN: usize = 16;

/// How a replacement's file is named (`era.allow_overwrite`, the operator's `spec.rebuild`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplacementNaming {
    /// The committed file's own name (`part-S-E.parquet`): the plain layout, as the original
    /// copier wrote it.
    #[default]
    SameName,
    /// A new name per content ([`DatasetLayout::replacement_file_name`]): a Delta table, whose
    /// older versions keep adding the replaced file.
    ByChecksum,
}

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
        self.file_key(range, &Self::parquet_file_name(range))
    }

    /// The name of a replacement's file in a Delta table: `part-S-E.<tag>.parquet`, the tag the
    /// first [`REPLACEMENT_TAG_LEN`] hex digits of the file's sha256 (`checksum`, `sha256:…`).
    /// A new name, so the file the log's older versions add stays as it was for their readers
    /// (docs/formats.md#replacements-in-a-delta-table); the same bytes always get the same
    /// name, so a rerun after a crash writes the same file again.
    pub fn replacement_file_name(range: LedgerRange, checksum: &str) -> String {
        let hex = checksum.strip_prefix("sha256:").unwrap_or(checksum);
        let tag: String = hex
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(REPLACEMENT_TAG_LEN)
            .collect::<String>()
            .to_ascii_lowercase();
        format!("part-{range}.{tag}.parquet")
    }

    /// Whether `name` is a name a file of partition `range` may have: `part-S-E.parquet`, or a
    /// replacement's `part-S-E.<tag>.parquet` ([`Self::replacement_file_name`]).
    pub fn is_partition_file_name(range: LedgerRange, name: &str) -> bool {
        if name == Self::parquet_file_name(range) {
            return true;
        }
        let Some(tag) = name
            .strip_prefix(&format!("part-{range}."))
            .and_then(|rest| rest.strip_suffix(".parquet"))
        else {
            return false;
        };
        tag.len() == REPLACEMENT_TAG_LEN
            && tag
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    }

    /// The key of the file `name` in the folder of partition `range`.
    pub fn file_key(&self, range: LedgerRange, name: &str) -> String {
        format!("{}/{name}", self.partition_dir(range))
    }

    /// The key of the file `manifest` commits: the name it records when that is one of the
    /// partition's names ([`Self::is_partition_file_name`]), `part-S-E.parquet` otherwise (the
    /// manifest policy refuses such a manifest; nothing outside the folder is ever named).
    pub fn committed_file_key(&self, manifest: &crate::publish::Manifest) -> String {
        let range = manifest.range();
        match manifest.primary() {
            Some(t) if Self::is_partition_file_name(range, &t.file) => {
                self.file_key(range, &t.file)
            }
            _ => self.parquet_key(range),
        }
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
    fn a_replacement_name_is_one_of_the_partition_names_and_nothing_else_is() {
        let r = LedgerRange::new(2, 1001);
        let checksum = format!("sha256:{}", "AB12".repeat(16));
        let name = DatasetLayout::replacement_file_name(r, &checksum);
        assert_eq!(name, "part-2-1001.ab12ab12ab12ab12.parquet");
        assert!(DatasetLayout::is_partition_file_name(r, &name));
        assert!(DatasetLayout::is_partition_file_name(
            r,
            "part-2-1001.parquet"
        ));
        for other in [
            "part-2-1002.parquet",
            "part-2-1001.ab12.parquet",
            "part-2-1001.ab12ab12ab12ab1g.parquet",
            "part-2-1001.parquet.replacing",
            "part-2-1001.../../x.parquet",
            "part-3-1001.ab12ab12ab12ab12.parquet",
        ] {
            assert!(!DatasetLayout::is_partition_file_name(r, other), "{other}");
        }
        let l = layout("bronze/");
        let mut manifest = crate::publish::fixtures::manifest(r);
        assert_eq!(l.committed_file_key(&manifest), l.parquet_key(r));
        manifest.tables.values_mut().next().unwrap().file = name.clone();
        assert_eq!(
            l.committed_file_key(&manifest),
            format!("bronze/testnet/pre_p23/v1/ledgers_lcm_raw/range=2-1001/{name}")
        );
        manifest.tables.values_mut().next().unwrap().file = "../../escape.parquet".into();
        assert_eq!(l.committed_file_key(&manifest), l.parquet_key(r));
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
