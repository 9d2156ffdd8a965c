//! Where the program sends each backend's frames, from the kernel's own tables.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::{
    config::{Config, ForwardingMode},
    neighbor::{NeighborError, Resolution, Resolver},
    plan::{BackendId, Path},
};

/// Why a backend has no path.
#[derive(Debug, Error)]
pub enum PathError {
    #[error("backend {backend} of VIP {vip}: {source}")]
    Resolve {
        vip: String,
        backend: std::net::SocketAddr,
        #[source]
        source: NeighborError,
    },
    #[error(
        "backend {backend} of VIP {vip} is reached through the gateway {gateway}; direct \
         server return (mode \"dsr\") needs every backend on a directly connected network"
    )]
    NotOnLink {
        vip: String,
        backend: std::net::SocketAddr,
        gateway: std::net::IpAddr,
    },
}

/// Resolves every backend of `config`. A configured `mac` replaces the neighbour table's
/// answer, but the route still decides the interface.
///
/// # Errors
///
/// Every backend that cannot be reached, one error each.
pub fn resolve_all(
    config: &Config,
    resolver: &mut Resolver,
) -> Result<BTreeMap<BackendId, Path>, Vec<PathError>> {
    let mut paths = BTreeMap::new();
    let mut errors = Vec::new();
    for vip in &config.vips {
        for backend in &vip.backends {
            let id = BackendId {
                vip: vip.name.clone(),
                address: backend.socket_address(),
            };
            let resolution = match resolver.resolve(backend.address) {
                Ok(resolution) => resolution,
                Err(source) => {
                    errors.push(PathError::Resolve {
                        vip: vip.name.clone(),
                        backend: id.address,
                        source,
                    });
                    continue;
                }
            };
            match path_of(&resolution, backend.address, vip.mode, backend.mac) {
                Ok(path) => {
                    paths.insert(id, path);
                }
                Err(gateway) => errors.push(PathError::NotOnLink {
                    vip: vip.name.clone(),
                    backend: id.address,
                    gateway,
                }),
            }
        }
    }
    if errors.is_empty() {
        Ok(paths)
    } else {
        Err(errors)
    }
}

/// The path for one resolved backend; the gateway when DSR cannot reach it.
fn path_of(
    resolution: &Resolution,
    backend: std::net::IpAddr,
    mode: ForwardingMode,
    configured_mac: Option<[u8; 6]>,
) -> Result<Path, std::net::IpAddr> {
    if mode == ForwardingMode::Dsr && resolution.next_hop != backend {
        return Err(resolution.next_hop);
    }
    Ok(Path {
        ifindex: resolution.ifindex,
        source_mac: resolution.source_mac,
        destination_mac: configured_mac.unwrap_or(resolution.destination_mac),
    })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn resolution(next_hop: &str) -> Resolution {
        Resolution {
            ifindex: 3,
            interface: "eth1".into(),
            source_mac: [2, 0, 0, 0, 0, 2],
            next_hop: next_hop.parse().expect("an address"),
            destination_mac: [2, 0, 0, 0, 0, 21],
        }
    }

    #[test]
    fn an_on_link_backend_gets_its_neighbour_mac() {
        let backend: IpAddr = "198.51.100.21".parse().expect("an address");
        let path = path_of(
            &resolution("198.51.100.21"),
            backend,
            ForwardingMode::Dsr,
            None,
        )
        .expect("a path");
        assert_eq!(
            path,
            Path {
                ifindex: 3,
                source_mac: [2, 0, 0, 0, 0, 2],
                destination_mac: [2, 0, 0, 0, 0, 21],
            }
        );
    }

    #[test]
    fn a_configured_mac_wins_over_the_neighbour_table() {
        let backend: IpAddr = "198.51.100.21".parse().expect("an address");
        let mac = [2, 0, 0x5e, 0, 0, 0x21];
        let path = path_of(
            &resolution("198.51.100.21"),
            backend,
            ForwardingMode::Dsr,
            Some(mac),
        )
        .expect("a path");
        assert_eq!(path.destination_mac, mac);
    }

    #[test]
    fn dsr_refuses_a_backend_behind_a_gateway() {
        let backend: IpAddr = "203.0.113.21".parse().expect("an address");
        let gateway = path_of(
            &resolution("198.51.100.1"),
            backend,
            ForwardingMode::Dsr,
            None,
        )
        .expect_err("not on link");
        assert_eq!(
            gateway,
            "198.51.100.1".parse::<IpAddr>().expect("an address")
        );
    }
}
