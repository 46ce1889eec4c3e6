//! Where each camera should run: weighted rendezvous hashing over the live nodes, with each
//! node's capacity as a hard limit. Every node computes the same answer from the same inputs,
//! so no node has to tell the others; a node's death moves only its own cameras (each to the
//! next node in that camera's ranking), and a node that joins takes a fair share.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// A live node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Node id.
    pub node: String,
    /// Cameras it may run.
    pub capacity: usize,
}

/// The node's score for a camera: `-capacity / ln(u)` with `u` in (0, 1) from a hash of both
/// ids, so a node with twice the capacity wins about twice as many cameras.
fn score(node: &Candidate, camera: &str) -> f64 {
    let digest = Sha256::new()
        .chain_update(node.node.as_bytes())
        .chain_update([0])
        .chain_update(camera.as_bytes())
        .finalize();
    let mut top = [0u8; 8];
    top.copy_from_slice(&digest[..8]);
    // 53 bits, shifted off 0 and 1, so ln(u) is finite and negative.
    let u = ((u64::from_be_bytes(top) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(node.capacity.max(1) as f64) / u.ln()
}

/// The nodes in the order a camera prefers them (best first); ties by node id.
pub fn ranking<'a>(camera: &str, nodes: &'a [Candidate]) -> Vec<&'a Candidate> {
    let mut ranked: Vec<(f64, &Candidate)> = nodes
        .iter()
        .filter(|n| n.capacity > 0)
        .map(|n| (score(n, camera), n))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.node.cmp(&b.1.node)));
    ranked.into_iter().map(|(_, n)| n).collect()
}

/// Camera id -> node id for every camera some node has room for. Cameras are placed in id
/// order, each on the first node of its ranking with room left; a camera no node has room for
/// is left out.
pub fn place(cameras: &[String], nodes: &[Candidate]) -> BTreeMap<String, String> {
    let mut sorted: Vec<&String> = cameras.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for camera in sorted {
        let pick = ranking(camera, nodes)
            .into_iter()
            .find(|n| load.get(n.node.as_str()).copied().unwrap_or(0) < n.capacity);
        if let Some(n) = pick {
            *load.entry(n.node.as_str()).or_default() += 1;
            out.insert(camera.clone(), n.node.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(spec: &[(&str, usize)]) -> Vec<Candidate> {
        spec.iter()
            .map(|(n, c)| Candidate {
                node: n.to_string(),
                capacity: *c,
            })
            .collect()
    }

    fn cameras(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("cam-{i:04}")).collect()
    }

    #[test]
    fn every_node_computes_the_same_placement_whatever_the_order_it_lists() {
        let a = nodes(&[("n1", 100), ("n2", 100), ("n3", 100)]);
        let mut b = a.clone();
        b.reverse();
        let mut cams = cameras(200);
        let p1 = place(&cams, &a);
        cams.reverse();
        assert_eq!(p1, place(&cams, &b));
        assert_eq!(p1.len(), 200);
    }

    #[test]
    fn a_dead_node_moves_only_its_own_cameras() {
        let three = nodes(&[("n1", 1000), ("n2", 1000), ("n3", 1000)]);
        let two = nodes(&[("n1", 1000), ("n3", 1000)]);
        let cams = cameras(600);
        let (before, after) = (place(&cams, &three), place(&cams, &two));
        let mut moved = 0;
        for (cam, node) in &before {
            if node == "n2" {
                moved += 1;
                assert_ne!(after[cam], "n2");
            } else {
                assert_eq!(&after[cam], node, "{cam} moved though its node lives");
            }
        }
        // About a third, with hashing's spread.
        assert!((150..=250).contains(&moved), "{moved} of 600 moved");
    }

    #[test]
    fn shares_follow_capacity_and_never_exceed_it() {
        let ns = nodes(&[("big", 200), ("small", 100)]);
        let p = place(&cameras(150), &ns);
        let big = p.values().filter(|n| *n == "big").count();
        // Weighted 2:1, so about 100 of 150.
        assert!((85..=115).contains(&big), "big took {big} of 150");
        let tight = nodes(&[("a", 3), ("b", 2)]);
        let p = place(&cameras(8), &tight);
        assert_eq!(p.len(), 5, "only 5 places for 8 cameras");
        assert_eq!(p.values().filter(|n| *n == "a").count(), 3);
    }
}
