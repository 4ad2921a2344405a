//! The History Archive State (`.well-known/stellar-history.json`, pure): the archive's newest
//! checkpoint (`currentLedger`) and the network it belongs to (`networkPassphrase`, written by
//! stellar-core since HAS version 2).

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryArchiveState {
    pub version: u32,
    #[serde(default)]
    pub server: Option<String>,
    pub current_ledger: u32,
    #[serde(default)]
    pub network_passphrase: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HasError {
    #[error(
        "an HTML page, not the archive's state JSON (it starts {start:?}): the archive URL is likely wrong"
    )]
    Html { start: String },
    #[error("not a History Archive State: {message}")]
    NotHas { message: String },
    #[error("the archive belongs to network {found:?}, not {expected:?} (era.network)")]
    WrongNetwork { expected: String, found: String },
}

/// Parses the HAS file's bytes.
pub fn parse_has(bytes: &[u8]) -> Result<HistoryArchiveState, HasError> {
    let start = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned();
    if start.trim_start().starts_with('<') {
        return Err(HasError::Html {
            start: start.trim_start().chars().take(40).collect(),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| HasError::NotHas {
        message: e.to_string(),
    })
}

/// Checks the archive's network against the era's passphrase. A HAS without a passphrase
/// (version 1, older stellar-core) cannot be checked: `Ok(false)`.
pub fn check_network(has: &HistoryArchiveState, expected: &str) -> Result<bool, HasError> {
    match &has.network_passphrase {
        Some(found) if found != expected => Err(HasError::WrongNetwork {
            expected: expected.to_string(),
            found: found.clone(),
        }),
        Some(_) => Ok(true),
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TESTNET: &str = "Test SDF Network ; September 2015";

    #[test]
    fn the_state_names_its_network_and_newest_checkpoint() {
        let has = parse_has(
            br#"{"version": 2, "server": "stellar-core 22.0.0", "currentLedger": 1410111,
                 "networkPassphrase": "Test SDF Network ; September 2015",
                 "currentBuckets": [], "hotArchiveBuckets": []}"#,
        )
        .unwrap();
        assert_eq!(has.current_ledger, 1_410_111);
        assert_eq!(check_network(&has, TESTNET), Ok(true));
        let err =
            check_network(&has, "Public Global Stellar Network ; September 2015").unwrap_err();
        assert!(err.to_string().contains("Test SDF Network"), "{err}");

        let v1 =
            parse_has(br#"{"version": 1, "currentLedger": 63, "currentBuckets": []}"#).unwrap();
        assert_eq!(check_network(&v1, TESTNET), Ok(false));
    }

    #[test]
    fn an_html_page_or_other_json_is_named_as_such() {
        let err = parse_has(b"<!DOCTYPE html><html><body>404</body></html>").unwrap_err();
        assert!(matches!(err, HasError::Html { .. }), "{err}");
        assert!(err.to_string().contains("HTML page"), "{err}");
        let err = parse_has(br#"{"hello": 1}"#).unwrap_err();
        assert!(
            err.to_string().contains("not a History Archive State"),
            "{err}"
        );
    }
}
