//! Reachability: what a node depends on and what depends on it; cutting a network after a
//! node and pruning what no output needs.

use super::{EditError, first_output};
use crate::graph::Network;
use crate::weights::Store;
use std::collections::HashSet;

/// Node `i` and every node it depends on.
pub fn ancestors(net: &Network, i: usize) -> Vec<usize> {
    let mut needed: HashSet<&str> = net.nodes[i].present_inputs().collect();
    let mut out = vec![i];
    for j in (0..i).rev() {
        if net.nodes[j]
            .outputs
            .iter()
            .any(|o| needed.contains(o.as_str()))
        {
            out.push(j);
            needed.extend(net.nodes[j].present_inputs());
        }
    }
    out
}

/// Node `i` and every node that depends on it.
pub fn descendants(net: &Network, i: usize) -> Vec<usize> {
    let mut produced: HashSet<&str> = net.nodes[i].outputs.iter().map(String::as_str).collect();
    let mut out = vec![i];
    for j in i + 1..net.nodes.len() {
        if net.nodes[j].present_inputs().any(|v| produced.contains(v)) {
            out.push(j);
            produced.extend(net.nodes[j].outputs.iter().map(String::as_str));
        }
    }
    out
}

/// The network up to and including `node`: its first output becomes the network's output and
/// everything not needed to compute it is removed, weights included. This is how a network
/// whose head holds an unsupported op still serves as a backbone.
pub fn cut_after(net: &Network, store: &Store, node: &str) -> Result<(Network, Store), EditError> {
    let (_, out) = first_output(net, node)?;
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
