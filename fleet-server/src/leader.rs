//! Which replica runs the rollout engine. Replicas on one PostgreSQL database compete for one lease
//! row (`holder`, `epoch`, `expires_ms`), taken and renewed in a transaction with the database's clock.
//! The epoch is a fencing token: it grows whenever the lease changes hands, and every engine step
//! commits only if the lease still carries the epoch it was computed under (see
//! [`crate::store::Fence`]). So a leader that stalls past its lease, or is cut off, cannot commit a
//! wave decision after another replica took over. With SQLite the one server is always the leader.
//!
//! [`decide`] is the pure rule; [`Leadership`] keeps the local view; [`run`] renews every third of
//! the lease time, and on taking over republishes the stored desired state (the old leader may have
//! died between a commit and its publish).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::app::App;

/// The lease row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub epoch: u64,
    pub expires_ms: i64,
}

/// The lease to write if `me` leads from `now_ms` on, or `None` while another holder's lease runs.
/// A lapsed lease is taken with a new epoch, even by its own former holder: whatever it had in
/// flight under the old epoch is then refused.
pub fn decide(current: &Lease, me: &str, now_ms: i64, ttl_ms: i64) -> Option<Lease> {
    let live = current.expires_ms > now_ms;
    let epoch = match (live, current.holder == me) {
        (true, true) => current.epoch,
        (true, false) => return None,
        (false, _) => current.epoch + 1,
    };
    Some(Lease {
        holder: me.to_owned(),
        epoch,
        expires_ms: now_ms.saturating_add(ttl_ms),
    })
}

/// How long a granted lease is trusted locally, counted from before the request was sent: three
/// quarters of its time, so local clock drift and a slow answer stay inside the database's view.
pub fn trusted_for(ttl: Duration) -> Duration {
    ttl * 3 / 4
}

#[derive(Debug, Clone, Copy)]
struct Term {
    epoch: u64,
    until: Instant,
}

/// This replica's view of the engine lease.
#[derive(Debug)]
pub struct Leadership {
    id: String,
    term: Mutex<Option<Term>>,
}

impl Leadership {
    /// A replica with a fresh random identity.
    pub fn new() -> Self {
        let mut nonce = [0u8; 4];
        // Without randomness the process id alone still tells replicas on different hosts apart
        // in practice; the lease logic stays correct either way (only holder equality matters).
        let _ = getrandom::fill(&mut nonce);
        Self {
            id: format!("{}-{}", std::process::id(), hex::encode(nonce)),
            term: Mutex::new(None),
        }
    }

    /// This replica's identity (lease holder name, MQTT client id suffix).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The epoch to fence engine steps with, while this replica leads.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch_at(Instant::now())
    }

    fn epoch_at(&self, now: Instant) -> Option<u64> {
        let term = *self.term.lock().unwrap_or_else(|p| p.into_inner());
        term.filter(|t| now < t.until).map(|t| t.epoch)
    }

    /// Records the answer to a lease request sent at `asked_at`; returns true if this starts a term.
    fn grant(&self, epoch: Option<u64>, asked_at: Instant, ttl: Duration) -> bool {
        let before = self.epoch_at(asked_at);
        let mut term = self.term.lock().unwrap_or_else(|p| p.into_inner());
        *term = epoch.map(|epoch| Term {
            epoch,
            until: asked_at + trusted_for(ttl),
        });
        epoch.is_some() && before != epoch
    }
}

impl Default for Leadership {
    fn default() -> Self {
        Self::new()
    }
}

/// Takes and renews the lease until `shutdown`, then gives it up.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let ttl = app.settings.lease_ttl;
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    loop {
        let asked_at = Instant::now();
        let holder = app.leader.id().to_owned();
        match app.db(move |s| s.engine_lease(&holder, ttl_ms)).await {
            Ok(epoch) => {
                if app.leader.grant(epoch, asked_at, ttl) {
                    tracing::info!(replica = app.leader.id(), epoch, "leading the rollout engine");
                    if app.settings.database != crate::settings::Database::Sqlite {
                        republish(&app).await;
                    }
                    app.wake.notify_one();
                }
            }
            // Keep the current term until it runs out locally; the database fences it anyway.
            Err(e) => tracing::warn!(error = %e, "renewing the engine lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep(ttl / 3) => {}
            _ = shutdown.changed() => break,
        }
    }
    if app.leader.epoch().is_some() {
        let holder = app.leader.id().to_owned();
        if let Err(e) = app.db(move |s| s.release_engine_lease(&holder)).await {
            tracing::warn!(error = %e, "releasing the engine lease");
        }
    }
}

/// A new leader publishes every stored desired envelope once: its predecessor may have died
/// between committing a step and publishing it (the publish after commit is not atomic with it).
async fn republish(app: &App) {
    let all = match app.db(|s| s.all_desired()).await {
        Ok(all) => all,
        Err(e) => return tracing::error!(error = %e, "loading desired state to republish"),
    };
    tracing::info!(count = all.len(), "new engine leader republishing desired state");
    for d in all {
        let msg = crate::app::Outgoing {
            topic: halyard_protocol::Topic::Desired.for_device(&d.device),
            payload: d.envelope.into_bytes(),
        };
        if app.outgoing.send(msg).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, epoch: u64, expires_ms: i64) -> Lease {
        Lease {
            holder: holder.into(),
            epoch,
            expires_ms,
        }
    }

    #[test]
    fn lease_rules() {
        // (current, me, now) -> expected
        let rows = [
            (lease("", 0, 0), "a", 100, Some(lease("a", 1, 110))), // first ever
            (lease("a", 1, 110), "a", 105, Some(lease("a", 1, 115))), // renew keeps epoch
            (lease("a", 1, 110), "b", 105, None),                  // b waits while a's lease runs
            (lease("a", 1, 110), "b", 110, Some(lease("b", 2, 120))), // expired: b takes over
            (lease("a", 1, 110), "a", 111, Some(lease("a", 2, 121))), // lapsed holder: new epoch
            (lease("b", 2, 120), "a", 115, None),                  // the deposed leader stays out
        ];
        for (cur, me, now, want) in rows {
            assert_eq!(decide(&cur, me, now, 10), want, "{cur:?} {me} at {now}");
        }
    }

    #[test]
    fn a_term_ends_locally_before_the_database_lease() {
        let l = Leadership::new();
        let ttl = Duration::from_secs(8);
        let t0 = Instant::now();
        assert!(l.grant(Some(3), t0, ttl), "first grant starts a term");
        assert!(!l.grant(Some(3), t0, ttl), "a renewal does not");
        assert_eq!(l.epoch_at(t0 + Duration::from_secs(5)), Some(3));
        assert_eq!(l.epoch_at(t0 + Duration::from_secs(6)), None);
        assert!(!l.grant(None, t0, ttl));
        assert_eq!(l.epoch_at(t0), None, "refused: no term");
        assert!(l.grant(Some(4), t0, ttl), "a new epoch starts a new term");
    }
}
