//! Faults in virtual time: who a fault hits (seeded), and what it does to links, the broker, the
//! server process and the artifact store.

use super::server::{VServer, VServerError};
use super::world::{Ev, World};
use crate::faults::{FaultKind, FaultSpec};

impl World {
    fn hit(&self, spec: &FaultSpec, k: usize) -> Vec<usize> {
        let seed = self.seed ^ (k as u64).wrapping_mul(0x51_7cc1_b727_220a);
        (0..self.devices.len())
            .filter(|&i| spec.site.as_ref().is_none_or(|s| &self.devices[i].site == s))
            .filter(|&i| crate::faults::chosen(i, seed, spec.share))
            .collect()
    }

    pub(super) fn apply_fault(&mut self, k: usize, starts: bool, t: i64) -> Result<(), VServerError> {
        let spec = self.faults[k].clone();
        let what = format!("{:?}", spec.kind);
        let hit = self.hit(&spec, k);
        let phase = if starts { "starts" } else { "ends" };
        let whom = match spec.kind {
            FaultKind::BrokerRestart | FaultKind::ServerCrash => String::new(),
            FaultKind::CorruptArtifact => format!(" (bundle of {})", spec.version.as_deref().unwrap_or("?")),
            _ => format!(
                " ({} devices{})",
                hit.len(),
                spec.site
                    .as_deref()
                    .map(|s| format!(", site {s}"))
                    .unwrap_or_default()
            ),
        };
        self.log
            .line(self.since(t), "fault", &what, &format!("{phase}{whom}"));
        use std::sync::atomic::Ordering::SeqCst;
        match spec.kind {
            FaultKind::PowerCut => {
                for &i in &hit {
                    let ops = 1 + super::mix(self.seed, i as u64) % 40;
                    self.devices[i].cut_power_after(ops);
                }
            }
            FaultKind::Partition => {
                for &i in &hit {
                    if starts && self.connected(i) {
                        self.will(i, t);
                    }
                    self.devices[i].link.partitioned.store(starts, SeqCst);
                }
                if !starts {
                    self.reconnect(&hit, t);
                }
            }
            FaultKind::BrokerRestart => {
                self.broker_up = !starts;
                if !starts {
                    let all: Vec<usize> = (0..self.devices.len()).collect();
                    self.reconnect(&all, t);
                }
            }
            FaultKind::ServerCrash => self.server_crash(starts, t)?,
            FaultKind::LossyLink => {
                let p = if starts {
                    u64::from(spec.loss_percent.unwrap_or(0)) * 10
                } else {
                    0
                };
                for &i in &hit {
                    self.devices[i].link.loss_permille.store(p, SeqCst);
                }
            }
            FaultKind::SlowLink => {
                let k = if starts { spec.kib_per_sec.unwrap_or(0) } else { 0 };
                for &i in &hit {
                    self.devices[i].link.kib_per_sec.store(k, SeqCst);
                }
            }
            FaultKind::ClockSkew => {
                for &i in &hit {
                    self.devices[i]
                        .clock
                        .set_skew(if starts { spec.skew_secs.unwrap_or(0) } else { 0 });
                }
            }
            FaultKind::CorruptArtifact => self.corrupt(spec.version.as_deref().unwrap_or_default())?,
        }
        Ok(())
    }

    /// Devices back on the network reconnect over the next minute (seeded jitter).
    fn reconnect(&mut self, devices: &[usize], t: i64) {
        for &i in devices {
            let jitter = (super::mix(self.seed ^ 0xc0ffee, (t as u64) ^ i as u64) % 60) as i64;
            self.at(t + 1 + jitter, Ev::Reconnect(i));
        }
    }

    fn server_crash(&mut self, starts: bool, t: i64) -> Result<(), VServerError> {
        if starts {
            if let Some(s) = self.server.take() {
                s.crash();
            }
            return Ok(());
        }
        let server = VServer::start(&self.server_dir, self.time.clone())?;
        // The new process subscribes: the broker hands it the retained reports; then it republishes
        // every desired state, as on any broker connect.
        let held: Vec<(String, Vec<u8>)> = std::mem::take(&mut self.held_reports)
            .into_iter()
            .map(|((_, topic), payload)| (topic, payload))
            .collect();
        if !held.is_empty() {
            self.stats.refused += server.ingest(held, t)? as u64;
        }
        let retained = server.retained()?;
        self.server = Some(server);
        self.publish(t, retained.into_iter().map(|o| (o.topic, o.payload)));
        self.wake_engine(t + 1);
        Ok(())
    }

    fn corrupt(&mut self, version: &str) -> Result<(), VServerError> {
        let Some(server) = &self.server else {
            return Ok(());
        };
        let release = server
            .app
            .store
            .release(version)
            .map_err(|e| VServerError(e.to_string()))?
            .ok_or_else(|| VServerError(format!("corrupt_artifact: no release {version}")))?;
        let path = server.app.artifacts_dir.join(&release.bundle_sha256);
        let mut bytes = std::fs::read(&path).map_err(|e| VServerError(format!("{}: {e}", path.display())))?;
        let at = bytes.len().saturating_sub(1) / 2;
        if let Some(b) = bytes.get_mut(at) {
            *b ^= 0x5a;
        }
        std::fs::write(&path, bytes).map_err(|e| VServerError(format!("{}: {e}", path.display())))
    }
}
