//! Performing one [`Action`]: journal, download, install, boot-control calls, reboot, the trial's
//! health loop, and the messages for the server.

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use halyard_ota::bundle::VerifyPolicy;
use halyard_ota::hash::Sha256Digest;
use halyard_protocol::{Artifact, Report, Sha256, Slot, SlotReport};
use sha2::{Digest, Sha256 as Hasher};
use time::OffsetDateTime;

use super::{Driver, DriverError, Outgoing, hw_index, hw_slot, partial};
use crate::durable;
use crate::fetch::FetchError;
use crate::fsm::{Action, Event, PayloadChoice, State};
use crate::health;
use crate::install::{self, Request};

/// Name of the download file in the data directory.
pub const DOWNLOAD_FILE: &str = "download.bundle";

/// How often one download may start over because the artifact changed under it.
const MAX_RESTARTS: u32 = 2;

impl Driver {
    pub(super) fn perform(&mut self, action: Action) -> Result<(), DriverError> {
        tracing::debug!(action = action.name(), "perform");
        match action {
            Action::Journal(state) => {
                let record = self.record.with_state(state);
                self.journal.store(&record)?;
                self.record = record;
            }
            Action::Download { artifact, from } => self.download(&artifact, from)?,
            Action::DiscardDownload => self.discard_download()?,
            Action::Install { slot, choice } => self.install(slot, choice)?,
            Action::MarkUnbootable(slot) => self.hw.boot.mark_unbootable(hw_slot(slot))?,
            Action::SetNext { slot, tries } => {
                self.hw.boot.set_next(hw_slot(slot), tries)?;
                self.queue.push_back(Event::NextSet);
            }
            Action::Reboot => {
                self.hw.power.reboot()?;
                self.rebooting = true;
            }
            Action::MarkSuccessful(slot) => self.hw.boot.mark_successful(hw_slot(slot))?,
            Action::StartHealthChecks => {
                let verdict = self.trial()?;
                self.queue.push_back(verdict);
            }
            // Checks run to their verdict inside StartHealthChecks: nothing is left running.
            Action::StopHealthChecks => {}
            Action::Emit { from, to, reason } => {
                let event = halyard_protocol::Event {
                    at: self.clock.now(),
                    rollout: self.rollout(),
                    from,
                    to,
                    reason,
                };
                self.outbox.push(Outgoing::Event(event));
            }
            Action::Report => {
                let report = self.report()?;
                self.outbox.push(Outgoing::Report(report));
            }
        }
        Ok(())
    }

    fn download_path(&self) -> PathBuf {
        self.settings.data_dir.join(DOWNLOAD_FILE)
    }

    fn discard_download(&mut self) -> Result<(), DriverError> {
        let path = self.download_path();
        self.crash.reach("download.discard")?;
        partial::remove(self.hw.files.as_ref(), &self.settings.data_dir)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(durable::io_err(&path, "remove")(e).into())
            }
            _ => Ok(()),
        }
    }

    /// Fetch `artifact` from the journaled offset `from`, journaling progress after each durable chunk.
    fn download(&mut self, artifact: &Artifact, from: u64) -> Result<(), DriverError> {
        let path = self.download_path();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(durable::io_err(&path, "open"))?;
        let len = file.metadata().map_err(durable::io_err(&path, "stat"))?.len();
        // Bytes past the journaled offset may be torn: drop them. A shorter file restarts the download.
        let mut offset = if len >= from { from } else { 0 };
        file.set_len(offset).map_err(durable::io_err(&path, "truncate"))?;
        let url = artifact.url.as_str();
        let mut saved = match offset {
            0 => None,
            _ => partial::load(self.hw.files.as_ref(), &self.settings.data_dir, url)?,
        };
        if let Some(validator) = &saved {
            tracing::info!(url, offset, etag = ?validator.etag, "resuming against the stored validator");
            self.fetcher.remember_validator(url, validator.clone());
        }
        let mut restarts = 0;
        while offset < artifact.size {
            let end = artifact.size.min(offset + self.settings.chunk.max(1));
            let bytes = match self.fetch_chunk(artifact, offset, end) {
                Ok(bytes) => bytes,
                // The bytes so far belong to an older file: start over (a later crash sees a file
                // shorter than the journaled offset, which restarts it too).
                Err(FetchError::Changed { url, reason }) if restarts < MAX_RESTARTS => {
                    tracing::warn!(%url, %reason, offset, "artifact changed, downloading again from zero");
                    restarts += 1;
                    file.set_len(0).map_err(durable::io_err(&path, "truncate"))?;
                    offset = 0;
                    saved = None;
                    continue;
                }
                // Stay in Downloading at the journaled offset: the next start resumes from it.
                Err(FetchError::Interrupted { url }) => {
                    tracing::info!(%url, offset, "download paused, the agent is stopping");
                    return Ok(());
                }
                Err(e) => {
                    self.queue.push_back(Event::DownloadFailed {
                        reason: e.to_string(),
                    });
                    return Ok(());
                }
            };
            // The validator of these bytes is durable before the journal counts them.
            let seen = self.fetcher.validator(url);
            if let Some(validator) = seen.as_ref().filter(|_| seen != saved) {
                partial::store(
                    self.hw.files.as_ref(),
                    &self.settings.data_dir,
                    url,
                    validator,
                    self.crash.as_ref(),
                )?;
                saved = seen;
            }
            self.crash.reach("download.write")?;
            file.write_all_at(&bytes, offset)
                .map_err(durable::io_err(&path, "write"))?;
            self.crash.reach("download.fsync")?;
            file.sync_data().map_err(durable::io_err(&path, "fsync"))?;
            offset = end;
            self.step(&Event::DownloadProgress { done: offset })?;
        }
        let event = match file_sha256(&path)? {
            digest if digest == artifact.sha256 => Event::DownloadDone,
            digest => Event::DownloadFailed {
                reason: format!(
                    "downloaded {} has sha256 {digest}, expected {}",
                    artifact.url, artifact.sha256
                ),
            },
        };
        self.queue.push_back(event);
        Ok(())
    }

    fn fetch_chunk(&mut self, artifact: &Artifact, start: u64, end: u64) -> Result<Vec<u8>, FetchError> {
        let mut attempt = 1;
        loop {
            let mut buf = Vec::with_capacity((end - start) as usize);
            match self.fetcher.fetch_range(&artifact.url, start..end, &mut buf) {
                Ok(()) => return Ok(buf),
                Err(FetchError::Io { url, source }) if attempt < self.settings.fetch_attempts => {
                    tracing::warn!(%url, %source, attempt, "fetch failed, retrying");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn install(&mut self, slot: Slot, choice: PayloadChoice) -> Result<(), DriverError> {
        let source = self
            .record
            .images
            .get(self.active)
            .filter(|i| Some(i.sha256) == self.active_sha256)
            .cloned();
        let secs = i64::try_from(self.clock.now()).unwrap_or(i64::MAX);
        let now = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let policy = VerifyPolicy {
            product: Some(self.settings.product.clone()),
            min_security_version: self.record.security_floor,
            now,
            active_source_sha256: source.as_ref().map(|i| Sha256Digest(i.sha256.0)),
        };
        let bundle = self.download_path();
        let [a, b] = &mut self.hw.slots;
        let (target, active) = if hw_index(slot) == 0 { (a, b) } else { (b, a) };
        let request = Request {
            bundle: &bundle,
            root: &self.settings.root,
            policy,
            limits: &self.settings.limits,
            target: (hw_slot(slot), target.as_mut()),
            source: source.map(|i| {
                (
                    active.as_mut() as &mut dyn halyard_hardware::block::BlockDevice,
                    i.size,
                )
            }),
            choice,
        };
        let event = match install::install(request) {
            Ok(done) => Event::InstallDone {
                image: done.image,
                security_version: done.security_version,
            },
            Err(e) => Event::InstallFailed {
                reason: e.to_string(),
            },
        };
        self.queue.push_back(event);
        Ok(())
    }

    /// Run the checks for the stability window, petting the watchdog; the verdict as an event.
    /// Within the start-up grace, rounds may fail until the first one passes; after that, or once
    /// the grace is over, the first failure is the verdict.
    fn trial(&mut self) -> Result<Event, DriverError> {
        let start = self.clock.now();
        let window = self.settings.health.stability_window.as_secs();
        let grace = self.settings.health.startup_grace.as_secs();
        let mut passing_since: Option<u64> = None;
        loop {
            self.hw.watchdog.keepalive()?;
            let failure = health::first_failure(&self.settings.health.checks);
            let now = self.clock.now();
            match failure {
                Some(reason) if passing_since.is_some() || now.saturating_sub(start) >= grace => {
                    return Ok(Event::HealthFailed { reason });
                }
                Some(reason) => tracing::info!(%reason, "health check failed within the start-up grace"),
                None => {
                    let since = *passing_since.get_or_insert(now);
                    if now.saturating_sub(since) >= window {
                        return Ok(Event::HealthPassed);
                    }
                }
            }
            if let State::Trial { deadline, .. } = self.record.state
                && now >= deadline
            {
                return Ok(Event::TrialDeadline);
            }
            self.clock.sleep(self.settings.health.interval);
        }
    }

    fn rollout(&self) -> Option<String> {
        match &self.record.state {
            State::Downloading { update, .. } | State::Installing { update, .. } => update.rollout.clone(),
            State::Staged(s) | State::Rebooting { staging: s, .. } | State::Trial { staging: s, .. } => {
                s.update.rollout.clone()
            }
            State::Committed { rollout, .. }
            | State::RolledBack { rollout, .. }
            | State::Failed { rollout, .. } => rollout.clone(),
            State::Idle => None,
        }
    }

    fn slot_report(&mut self, slot: Slot) -> Result<SlotReport, DriverError> {
        let state = self.hw.boot.slot_state(hw_slot(slot))?;
        let image = self.record.images.get(slot);
        Ok(SlotReport {
            version: image.map(|i| i.version.clone()),
            image_sha256: image.map(|i| i.sha256),
            bootable: state.bootable,
            successful: state.successful,
        })
    }

    /// The full report as of now (both slots hashed, boot flags read): what a transport publishes on
    /// connect, before any transition has produced one.
    pub fn report(&mut self) -> Result<Report, DriverError> {
        let last_error = match &self.record.state {
            State::RolledBack { reason, .. } | State::Failed { reason, .. } => Some(reason.clone()),
            _ => None,
        };
        Ok(Report {
            at: self.clock.now(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            product: self.settings.product.to_string(),
            hardware_class: self.settings.hardware_class.clone(),
            active: self.active,
            slot_a: self.slot_report(Slot::A)?,
            slot_b: self.slot_report(Slot::B)?,
            state: self.record.state.wire(),
            last_error,
            health: None,
        })
    }
}

fn file_sha256(path: &std::path::Path) -> Result<Sha256, DriverError> {
    let mut file = fs::File::open(path).map_err(durable::io_err(path, "open"))?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(durable::io_err(path, "read"))?;
        if n == 0 {
            return Ok(Sha256(hasher.finalize().into()));
        }
        hasher.update(&buf[..n]);
    }
}
