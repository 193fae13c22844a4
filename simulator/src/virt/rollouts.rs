//! The world's side of the rollout engine: an engine pass in virtual time, its decisions in the event
//! log, and the rollout statuses the run loop checks after every instant.

use std::collections::HashMap;

use super::server::{VServer, VServerError};
use super::world::World;

impl World {
    /// A rollout's status as of the last engine pass or [`World::refresh_rollouts`]; none while the
    /// server is down.
    pub fn rollout_status(&self, id: &str) -> Option<&str> {
        self.server.as_ref()?;
        self.rollouts
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.status.as_str())
    }

    /// Reads rollout statuses from the store again (after an operator call). Ids and statuses only:
    /// a rollout's state is as large as the fleet.
    pub fn refresh_rollouts(&mut self) -> Result<(), VServerError> {
        if let Some(server) = &self.server {
            self.rollouts = server
                .app
                .store
                .rollout_revs()
                .map_err(|e| VServerError(e.to_string()))?;
        }
        Ok(())
    }

    pub(super) fn engine_step(&mut self, t: i64) -> Result<(), VServerError> {
        let Some(server) = &self.server else {
            return Ok(());
        };
        self.stats.engine_steps += 1;
        self.engine_ran = t;
        let published = server.engine_step()?;
        self.refresh_rollouts()?;
        let Some(server) = &self.server else {
            return Ok(());
        };
        let active = self
            .rollouts
            .iter()
            .any(|r| halyard_server::engine::is_active(&r.status));
        let decisions = new_decisions(server, &self.rollouts, &mut self.seen_decisions)?;
        for d in decisions {
            self.log.line(
                self.since(t),
                "rollout",
                &d.rollout,
                &format!("[{}] {}", d.kind, d.message),
            );
        }
        self.publish(t, published.into_iter().map(|o| (o.topic, o.payload)));
        if active {
            self.wake_engine(t + self.timing.engine_tick);
        }
        Ok(())
    }
}

fn new_decisions(
    server: &VServer,
    rollouts: &[halyard_server::store::RolloutRev],
    seen: &mut HashMap<String, usize>,
) -> Result<Vec<halyard_server::model::Decision>, VServerError> {
    let store = &server.app.store;
    let err = |e: halyard_server::store::StoreError| VServerError(e.to_string());
    let mut out = Vec::new();
    let mut rollouts: Vec<_> = rollouts.iter().collect();
    rollouts.sort_by(|a, b| a.id.cmp(&b.id));
    for r in rollouts {
        let all = store.decisions(&r.id).map_err(err)?;
        let n = seen.entry(r.id.clone()).or_default();
        out.extend(all.into_iter().skip(*n).inspect(|_| *n += 1));
    }
    Ok(out)
}
