//! Small network helpers.

use std::net::{SocketAddr, ToSocketAddrs};

/// Parses a listen address; Go-style `:9090` means all interfaces.
pub fn parse_listen_address(address: &str) -> Option<SocketAddr> {
    let full = if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_string()
    };
    full.to_socket_addrs().ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_port_only_address_listens_everywhere() {
        assert_eq!(
            parse_listen_address(":9090"),
            Some("0.0.0.0:9090".parse().unwrap())
        );
        assert_eq!(
            parse_listen_address("127.0.0.1:8080"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(parse_listen_address("nonsense"), None);
    }
}
