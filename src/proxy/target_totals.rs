//! Traffic totals per target virtual node, which a proxy reports to the control plane for
//! the admin page's edges.

use std::collections::BTreeMap;

use super::Runtime;

impl Runtime {
    /// Cumulative (virtual node, requests, 5xx responses) over every route of the current
    /// config.
    pub fn target_totals(&self) -> Vec<(String, u64, u64)> {
        let state = self.state();
        let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for by_cluster in state.responses.values() {
            for (cluster, counters) in by_cluster {
                let Some(c) = state.cluster(cluster) else {
                    continue;
                };
                let t = totals.entry(c.config.node.clone()).or_default();
                t.0 += counters.iter().map(|c| c.get()).sum::<u64>();
                t.1 += counters[4].get();
            }
        }
        totals
            .into_iter()
            .map(|(node, (requests, errors))| (node, requests, errors))
            .collect()
    }
}
