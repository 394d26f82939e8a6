//! Changes to a network that keep it valid or say why not.

use super::Network;
use crate::weights::Store;
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("there is no node named '{0}'")]
    NoSuchNode(String),
    #[error("{0}")]
    Invalid(String),
}

/// The network up to and including `node`: its first output becomes the network's output and
/// everything not needed to compute it is removed, weights included. This is how a network
/// whose head holds an unsupported op still serves as a backbone.
pub fn cut_after(net: &Network, store: &Store, node: &str) -> Result<(Network, Store), EditError> {
    let i = net
        .node_index(node)
        .ok_or_else(|| EditError::NoSuchNode(node.to_owned()))?;
    let out = net.nodes[i]
        .outputs
        .first()
        .cloned()
        .ok_or_else(|| EditError::Invalid(format!("node '{node}' has no output")))?;
    let mut net = net.clone();
    let mut store = store.clone();
    net.outputs = vec![out];
    prune(&mut net, &mut store);
    Ok((net, store))
}

/// Removes the nodes that no output depends on, and the weights no node reads.
pub fn prune(net: &mut Network, store: &mut Store) {
    let mut needed: HashSet<String> = net.outputs.iter().cloned().collect();
    let mut keep = vec![false; net.nodes.len()];
    for (i, node) in net.nodes.iter().enumerate().rev() {
        if node.outputs.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            needed.extend(node.present_inputs().map(str::to_owned));
        }
    }
    let mut k = keep.into_iter();
    net.nodes.retain(|_| k.next().unwrap_or(false));
    let read: HashSet<&str> = net.nodes.iter().flat_map(|n| n.present_inputs()).collect();
    store.retain(|name| read.contains(name));
}
