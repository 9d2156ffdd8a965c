//! Backends added and removed at runtime (`sipxdp backend add|remove`), over the ones the
//! configuration file names. Pure: the daemon applies it to each configuration it loads.

use std::{collections::BTreeSet, net::SocketAddr};

use crate::{
    config::{AdminState, BackendConfig, Config, ForwardingMode},
    plan::BackendId,
};

/// The runtime changes to the file's backends.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overlay {
    added: Vec<(String, BackendConfig)>,
    removed: BTreeSet<BackendId>,
}

impl Overlay {
    /// `file` with the changes applied.
    pub fn apply(&self, file: &Config) -> Config {
        let mut config = file.clone();
        for vip in &mut config.vips {
            vip.backends.retain(|backend| {
                !self.removed.contains(&BackendId {
                    vip: vip.name.clone(),
                    address: backend.socket_address(),
                })
            });
            for (name, backend) in &self.added {
                if *name == vip.name {
                    vip.backends.push(backend.clone());
                }
            }
        }
        config
    }

    /// Forgets the changes a new `file` makes moot: backends it now names, removals of
    /// backends it no longer names.
    pub fn settle(&mut self, file: &Config) {
        let in_file = |vip: &str, address: SocketAddr| {
            file.vips.iter().any(|config| {
                config.name == vip
                    && config
                        .backends
                        .iter()
                        .any(|backend| backend.socket_address() == address)
            })
        };
        self.added
            .retain(|(vip, backend)| !in_file(vip, backend.socket_address()));
        self.removed.retain(|id| in_file(&id.vip, id.address));
    }

    /// Adds `address` with `weight` to VIP `vip` of `config` (the configuration now in
    /// force), or says why not.
    pub fn add(
        &mut self,
        config: &Config,
        vip: &str,
        address: SocketAddr,
        weight: u32,
    ) -> Result<(), String> {
        let target = config
            .vips
            .iter()
            .find(|config| config.name == vip)
            .ok_or_else(|| format!("no VIP named {vip:?}"))?;
        if target.address.is_ipv4() != address.is_ipv4() {
            return Err(format!(
                "backend {address} and VIP {vip} ({}) are of different address families",
                target.address
            ));
        }
        if target.mode == ForwardingMode::Dsr && address.port() != target.port {
            return Err(format!(
                "backend port {} differs from VIP {vip}'s port {}: in DSR mode a backend \
                 listens on the VIP's port",
                address.port(),
                target.port
            ));
        }
        if target
            .backends
            .iter()
            .any(|backend| backend.socket_address() == address)
        {
            return Err(format!("VIP {vip} already has backend {address}"));
        }
        let id = BackendId {
            vip: vip.to_owned(),
            address,
        };
        // Adding back a backend of the file removed at runtime undoes the removal.
        if !self.removed.remove(&id) {
            self.added.push((
                vip.to_owned(),
                BackendConfig {
                    address: address.ip(),
                    port: address.port(),
                    weight,
                    mac: None,
                    state: AdminState::Active,
                },
            ));
        }
        Ok(())
    }

    /// Removes `address` from VIP `vip` of `config` (the configuration now in force), or
    /// says why not. The last backend that can take calls stays.
    pub fn remove(
        &mut self,
        config: &Config,
        vip: &str,
        address: SocketAddr,
    ) -> Result<(), String> {
        let target = config
            .vips
            .iter()
            .find(|config| config.name == vip)
            .ok_or_else(|| format!("no VIP named {vip:?}"))?;
        if !target
            .backends
            .iter()
            .any(|backend| backend.socket_address() == address)
        {
            return Err(format!("VIP {vip} has no backend {address}"));
        }
        if target.backends.len() == 1 {
            return Err(format!(
                "backend {address} is VIP {vip}'s last; a VIP keeps at least one"
            ));
        }
        let before = self.added.len();
        self.added
            .retain(|(name, backend)| !(name == vip && backend.socket_address() == address));
        if self.added.len() == before {
            self.removed.insert(BackendId {
                vip: vip.to_owned(),
                address,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::parse, test_support::Machine};

    fn file(backends: &[&str]) -> Config {
        let mut text = String::from(
            "[[interfaces]]\nname = \"eth0\"\n[[vips]]\nname = \"v\"\naddress = \"198.51.100.100\"\n",
        );
        for backend in backends {
            text.push_str(&format!("[[vips.backends]]\naddress = \"{backend}\"\n"));
        }
        parse(&text, "test.toml", &Machine).expect("a valid configuration")
    }

    fn addresses(config: &Config) -> Vec<String> {
        config.vips[0]
            .backends
            .iter()
            .map(|backend| backend.socket_address().to_string())
            .collect()
    }

    #[test]
    fn added_and_removed_backends_apply_and_settle() {
        let written = file(&["198.51.100.21", "198.51.100.22"]);
        let mut overlay = Overlay::default();
        let b23: SocketAddr = "198.51.100.23:5060".parse().unwrap();
        let b21: SocketAddr = "198.51.100.21:5060".parse().unwrap();
        overlay
            .add(&overlay.apply(&written), "v", b23, 2)
            .expect("added");
        overlay
            .remove(&overlay.apply(&written), "v", b21)
            .expect("removed");
        let config = overlay.apply(&written);
        assert_eq!(
            addresses(&config),
            ["198.51.100.22:5060", "198.51.100.23:5060"]
        );
        assert_eq!(config.vips[0].backends[1].weight, 2);

        // A file that now has .23 and no longer .21 makes both changes moot.
        overlay.settle(&file(&["198.51.100.22", "198.51.100.23"]));
        assert_eq!(overlay, Overlay::default());
    }

    #[test]
    fn mistakes_are_refused() {
        let mut overlay = Overlay::default();
        let config = overlay.apply(&file(&["198.51.100.21"]));
        let refused = |result: Result<(), String>, words: &str| {
            let error = result.expect_err("refused");
            assert!(error.contains(words), "{error}");
        };
        refused(
            overlay.add(&config, "w", "198.51.100.23:5060".parse().unwrap(), 1),
            "no VIP",
        );
        refused(
            overlay.add(&config, "v", "[2001:db8::23]:5060".parse().unwrap(), 1),
            "families",
        );
        refused(
            overlay.add(&config, "v", "198.51.100.23:5080".parse().unwrap(), 1),
            "DSR",
        );
        refused(
            overlay.add(&config, "v", "198.51.100.21:5060".parse().unwrap(), 1),
            "already",
        );
        refused(
            overlay.remove(&config, "v", "198.51.100.21:5060".parse().unwrap()),
            "last",
        );
        refused(
            overlay.remove(&config, "v", "198.51.100.29:5060".parse().unwrap()),
            "no backend",
        );
    }
}
