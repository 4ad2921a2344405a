//! Command line. The runbook spells long flags with one dash (`-config`, `-validate`,
//! `-version`, Go style); both spellings work.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::partition::LedgerRange;

#[derive(Debug, Parser)]
#[command(
    name = "bronze-copier",
    about = "Copies raw Stellar ledgers from a Galexie datastore into checksummed Parquet partitions",
    disable_version_flag = true,
    after_help = "Exit codes: 0 done, 1 runtime failure (retry), 2 config/usage error, 3 bad input data, \
                  4 conflict with existing output, 5 verify found problems, 130/143 interrupted (resume by restarting)."
)]
pub struct Cli {
    /// YAML config file (else $CONFIG_FILE, else environment variables only).
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// Check the configuration offline and exit.
    #[arg(long)]
    pub validate: bool,
    /// With -validate: also read each history archive's state (`archive.url`) and check its
    /// network against the era's, and the archive against `archive.trusted_ledger`.
    #[arg(long, requires = "validate")]
    pub online: bool,
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
    /// Never draw a progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a realistic Galexie datastore of N ledgers from real template ledgers.
    GenerateDatastore(GenerateArgs),
    /// Worker mode (one Kubernetes Job of bronze-operator): copy and commit the grid partitions
    /// of one range, adopting those already committed. No checkpoint, no PAS, no catalog: the
    /// operator sequences them. Config from -config and/or the environment variables.
    Worker(WorkerArgs),
    /// Check every committed partition (manifest, Parquet checksum, rows, hash links), the
    /// checkpoint and the PAS chain of the configured dataset; with a history archive
    /// (`archive.url` or `--archive`), every ledger against it. Exit 0 when clean, 5 when not.
    Verify(VerifyArgs),
    /// The runbook's health check: is the checkpoint there and fresh? Prints one line; exit
    /// 0 OK, 1 WARNING (stale), 2 CRITICAL (missing or corrupt).
    Health(HealthArgs),
    /// With `storage.table_format: delta`: repair a damaged Delta log (a missing version, a bad
    /// checkpoint, an add of a file that is gone): the log is moved aside to
    /// `_delta_log.damaged-<time>/` and rebuilt from the committed manifests. Refuses (and
    /// changes nothing) when the log is not damaged. Exit 0 repaired, 1 storage failure, 2 not
    /// a Delta dataset, 4 nothing to repair.
    RepairDeltaLog,
}

#[derive(Debug, Default, clap::Args)]
pub struct VerifyArgs {
    /// Compare every ledger with this history archive (replaces `archive.url` and
    /// `archive.urls`): https://, http://, s3://bucket/prefix, gs://bucket/prefix, file:// or a path.
    #[arg(long, value_name = "URL")]
    pub archive: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Checkpoint file to check (default: the one of the configured network/era/version).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Older than this many minutes is a WARNING.
    #[arg(long, default_value_t = crate::health::DEFAULT_MAX_AGE_MINUTES)]
    pub max_age_minutes: u64,
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The ledger range START-END; it must be made of whole partitions of the grid.
    #[arg(long, value_name = "START-END")]
    pub range: LedgerRange,
    /// Where Kubernetes reads a container's termination message; the error of a failed run is
    /// written there when the file exists (Kubernetes creates it), so `kubectl describe` shows it.
    #[arg(long, value_name = "PATH", default_value = "/dev/termination-log")]
    pub termination_log: PathBuf,
    /// A rebuild Job of bronze-operator's `spec.rebuild` (the rebuild's id): every partition of
    /// the range must be committed; each is rebuilt beside the committed one
    /// (`part-S-E.parquet.replacing`, marker `_rebuild.json`) and nothing committed changes: the
    /// operator checks and swaps it in.
    #[arg(long, value_name = "ID")]
    pub rebuild: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Output directory (the datastore root).
    #[arg(long)]
    pub out: PathBuf,
    /// Template ledgers: files (raw or zstd XDR, a LedgerCloseMeta or a batch) or directories.
    #[arg(long = "template", required = true)]
    pub templates: Vec<PathBuf>,
    /// Number of ledgers to write.
    #[arg(long, default_value_t = 1000)]
    pub ledgers: u32,
    /// First ledger sequence.
    #[arg(long, default_value_t = 2)]
    pub first_ledger: u32,
    #[arg(long, default_value_t = 1)]
    pub ledgers_per_batch: u32,
    #[arg(long, default_value_t = 64_000)]
    pub batches_per_partition: u32,
    /// Network whose passphrase goes into .config.json (pubnet, testnet, futurenet).
    #[arg(long, default_value = "pubnet")]
    pub network: String,
    /// zstd level of the objects (Galexie uses the library default, 3).
    #[arg(long, default_value_t = 3)]
    pub zstd_level: i32,
}

/// Rewrites Go-style `-flag` / `-flag=value` into `--flag` for every long flag the CLI knows,
/// leaving everything else (short flags, values, negative numbers) alone.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let command = Cli::command();
    let mut long_names: Vec<String> = Vec::new();
    let mut collect = |cmd: &clap::Command| {
        long_names.extend(
            cmd.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string)),
        );
    };
    collect(&command);
    for sub in command.get_subcommands() {
        collect(sub);
    }
    long_names.extend(["help".to_string()]);
    args.into_iter()
        .enumerate()
        .map(|(i, arg)| {
            let Some(text) = arg.to_str() else { return arg };
            if i == 0 || text.starts_with("--") || !text.starts_with('-') || text.len() < 3 {
                return arg;
            }
            let name = text[1..].split('=').next().unwrap_or("");
            if long_names.iter().any(|n| n == name) {
                OsString::from(format!("-{text}"))
            } else {
                arg
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(normalize_args(args.iter().map(OsString::from))).unwrap()
    }

    #[test]
    fn go_style_and_gnu_style_flags_both_work() {
        for args in [
            &["bronze-copier", "-config", "c.yaml", "-validate"][..],
            &["bronze-copier", "--config", "c.yaml", "--validate"][..],
            &["bronze-copier", "-config=c.yaml", "-validate"][..],
        ] {
            let cli = parse(args);
            assert_eq!(
                cli.config.as_deref(),
                Some(std::path::Path::new("c.yaml")),
                "{args:?}"
            );
            assert!(cli.validate, "{args:?}");
        }
        assert!(parse(&["bronze-copier", "-version"]).version);
    }

    #[test]
    fn subcommand_flags_accept_one_dash_too() {
        let cli = parse(&[
            "bronze-copier",
            "generate-datastore",
            "-out",
            "d",
            "-template",
            "t",
            "-ledgers",
            "5",
        ]);
        let Some(Command::GenerateDatastore(g)) = cli.command else {
            panic!("subcommand")
        };
        assert_eq!(g.ledgers, 5);
        assert_eq!(g.out, PathBuf::from("d"));
    }

    #[test]
    fn worker_mode_takes_a_range_and_the_global_config_flag() {
        let cli = parse(&[
            "bronze-copier",
            "worker",
            "-range",
            "2-1001",
            "-config",
            "c.yaml",
        ]);
        let Some(Command::Worker(w)) = cli.command else {
            panic!("subcommand")
        };
        assert_eq!(w.range, LedgerRange::new(2, 1001));
        assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("c.yaml")));
        for bad in ["2", "0-5", "9-3", "a-b", "2-99999999999"] {
            assert!(bad.parse::<LedgerRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn verify_takes_the_config_before_or_after_it() {
        for args in [
            &["bronze-copier", "verify", "-config", "c.yaml"][..],
            &["bronze-copier", "-config", "c.yaml", "verify"][..],
        ] {
            let cli = parse(args);
            assert!(
                matches!(&cli.command, Some(Command::Verify(v)) if v.archive.is_none()),
                "{args:?}"
            );
            assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("c.yaml")));
        }
    }

    #[test]
    fn verify_takes_an_archive() {
        let cli = parse(&[
            "bronze-copier",
            "verify",
            "-archive",
            "https://h/a",
            "-config",
            "c.yaml",
        ]);
        assert!(
            matches!(&cli.command, Some(Command::Verify(v)) if v.archive.as_deref() == Some("https://h/a")),
            "{cli:?}"
        );
    }

    #[test]
    fn health_takes_go_style_flags_and_the_global_config() {
        let cli = parse(&[
            "bronze-copier",
            "health",
            "-config",
            "c.yaml",
            "-max-age-minutes",
            "5",
        ]);
        let Some(Command::Health(h)) = cli.command else {
            panic!("subcommand")
        };
        assert_eq!(h.max_age_minutes, 5);
        assert_eq!(cli.config, Some(PathBuf::from("c.yaml")));
    }

    #[test]
    fn unknown_flags_are_still_rejected() {
        assert!(
            Cli::try_parse_from(normalize_args(
                ["bronze-copier", "-confgi", "x"].map(OsString::from)
            ))
            .is_err()
        );
    }
}
