//! Stellar network names and passphrases.

pub const PUBNET_PASSPHRASE: &str = "Public Global Stellar Network ; September 2015";
pub const TESTNET_PASSPHRASE: &str = "Test SDF Network ; September 2015";
pub const FUTURENET_PASSPHRASE: &str = "Test SDF Future Network ; October 2022";

/// The passphrase of a well-known network name (`mainnet` is accepted for pubnet).
pub fn passphrase_for(network: &str) -> Option<&'static str> {
    match network.to_ascii_lowercase().as_str() {
        "pubnet" | "mainnet" | "public" => Some(PUBNET_PASSPHRASE),
        "testnet" => Some(TESTNET_PASSPHRASE),
        "futurenet" => Some(FUTURENET_PASSPHRASE),
        _ => None,
    }
}

/// The passphrase the datastore must declare for this config.
pub fn expected_passphrase(config: &crate::config::Config) -> Option<String> {
    config
        .era
        .network_passphrase
        .clone()
        .filter(|p| !p.is_empty())
        .or_else(|| passphrase_for(&config.era.network).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_networks_have_their_passphrases() {
        assert_eq!(passphrase_for("pubnet"), Some(PUBNET_PASSPHRASE));
        assert_eq!(passphrase_for("Testnet"), Some(TESTNET_PASSPHRASE));
        assert_eq!(passphrase_for("standalone"), None);
    }
}
