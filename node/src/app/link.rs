//! [`Link`]: the agent's loop between the [`Driver`] and the MQTT transport. Arrivals on `desired`
//! are verified ([`Inbox`]) and fed to the driver; the driver's outbox is sealed with the device key
//! and a fresh sequence number and published; on every (re)connect the presence and the last report
//! are published again (both retained).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use halyard_protocol::{DeviceId, Report};

use super::AppError;
use super::fallback::Fallback;
use crate::client_cert::ClientIdentity;
use crate::clock::Clock;
use crate::config::MqttSettings;
use crate::driver::{Driver, Halt, Outgoing};
use crate::identity::SeqCounter;
use crate::transport::codec::{self, Batch, Inbox};
use crate::transport::mqtt::{Inbound, Mqtt, PresenceSigner};

/// What a link signs and verifies with: device id, its key, sequence counter, server key, clock.
type LinkParts = (DeviceId, SigningKey, SeqCounter, VerifyingKey, Arc<dyn Clock>);

/// The connection to the server, as the agent loop uses it.
#[derive(Debug)]
pub struct Link {
    mqtt: Mqtt,
    inbox: Inbox,
    device: DeviceId,
    key: SigningKey,
    seq: Arc<Mutex<SeqCounter>>,
    clock: Arc<dyn Clock>,
    last_report: Option<Report>,
    fallback: Option<Fallback>,
}

impl Link {
    /// Connect to the broker; every connection carries a pre-signed offline last will.
    pub fn connect(
        settings: &MqttSettings,
        device: DeviceId,
        key: SigningKey,
        seq: SeqCounter,
        server_key: VerifyingKey,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::connect_on(settings, device, key, seq, server_key, clock, None)
    }

    /// As [`Link::connect`], presenting the client certificate `client` on `mqtts://` (mutual TLS).
    pub fn connect_with_cert(
        settings: &MqttSettings,
        client: Option<&ClientIdentity>,
        device: DeviceId,
        key: SigningKey,
        seq: SeqCounter,
        server_key: VerifyingKey,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::start(settings, client, (device, key, seq, server_key, clock), None)
    }

    /// As [`Link::connect`], with the connection task on the runtime `shared` when given (many
    /// simulated devices in one process share one runtime; see [`Mqtt::start_on`]).
    pub fn connect_on(
        settings: &MqttSettings,
        device: DeviceId,
        key: SigningKey,
        seq: SeqCounter,
        server_key: VerifyingKey,
        clock: Arc<dyn Clock>,
        shared: Option<tokio::runtime::Handle>,
    ) -> Self {
        Self::start(settings, None, (device, key, seq, server_key, clock), shared)
    }

    fn start(
        settings: &MqttSettings,
        client: Option<&ClientIdentity>,
        (device, key, seq, server_key, clock): LinkParts,
        shared: Option<tokio::runtime::Handle>,
    ) -> Self {
        let inbox = Inbox::new(device.clone(), server_key);
        let seq = Arc::new(Mutex::new(seq));
        let signer = presence_signer(device.clone(), key.clone(), seq.clone(), clock.clone());
        let topic = inbox.topic();
        let mqtt = Mqtt::start_with_cert(settings, client, device.as_str(), topic, signer, shared);
        Self {
            mqtt,
            inbox,
            device,
            key,
            seq,
            clock,
            last_report: None,
            fallback: None,
        }
    }

    /// Poll the server over HTTP(S) while the broker is unreachable (see [`Fallback`]).
    pub fn with_http_fallback(
        mut self,
        api: crate::transport::api::ServerApi,
        settings: crate::config::FallbackSettings,
    ) -> Self {
        self.fallback = Some(Fallback::new(api, settings, self.clock.now()));
        self
    }

    /// Run until the driver asks for a reboot or `stop` is set; timers run every `tick`.
    pub fn serve(
        &mut self,
        driver: &mut Driver,
        tick: Duration,
        stop: &AtomicBool,
    ) -> Result<Halt, AppError> {
        let mut halt = driver.settle()?;
        if self.last_report.is_none() {
            // Published on the next connect, so the server learns the state even with no transition.
            self.last_report = Some(driver.report()?);
        }
        loop {
            self.flush(driver)?;
            if halt == Halt::Rebooting || stop.load(Ordering::SeqCst) {
                return Ok(halt);
            }
            halt = match self.mqtt.recv(tick) {
                Some(Inbound::Connected) => {
                    self.announce()?;
                    halt
                }
                Some(Inbound::Message { topic, payload }) => self.deliver(driver, &topic, &payload)?,
                None => self.poll(driver)?,
            };
        }
    }

    /// Disconnect cleanly. A clean disconnect does not fire the last will, so the offline presence
    /// is published first (with a fresh sequence number, newer than the online one).
    pub fn shutdown(self) {
        let offline = || -> Result<(), AppError> {
            let seq = self
                .seq
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .next_seq()?;
            let msg = codec::presence(false, self.clock.now(), &self.device, seq, &self.key)?;
            Ok(self.mqtt.publish(msg)?)
        };
        // Only when connected: a publish queued behind a dead connection could block.
        if self.mqtt.connected()
            && let Err(e) = offline()
        {
            tracing::warn!(error = %e, "offline presence");
        }
        self.mqtt.shutdown();
    }

    fn deliver(&mut self, driver: &mut Driver, topic: &str, payload: &[u8]) -> Result<Halt, AppError> {
        match self.inbox.accept(topic, payload) {
            Ok(Some(desired)) => {
                tracing::info!(rollout = ?desired.rollout, "desired state accepted");
                Ok(driver.desired(desired.rollout, desired.action)?)
            }
            Ok(None) => Ok(driver.settle()?),
            Err(rejected) => {
                tracing::warn!(%topic, %rejected, "ignored a message");
                Ok(driver.settle()?)
            }
        }
    }

    /// Settle; while the fallback is in charge and a poll is due, fetch `desired` over HTTP(S) and
    /// verify it exactly like an MQTT arrival (same inbox, same sequence guard).
    fn poll(&mut self, driver: &mut Driver) -> Result<Halt, AppError> {
        let (connected, now) = (self.mqtt.connected(), self.clock.now());
        let due = self.fallback.as_mut().is_some_and(|f| f.poll_due(connected, now));
        if !due {
            return Ok(driver.settle()?);
        }
        if self.fallback.as_mut().is_some_and(Fallback::take_announce) {
            // Like a (re)connect: the server learns the state even with no transition.
            self.announce()?;
        }
        let Some(fallback) = self.fallback.as_ref() else {
            return Ok(driver.settle()?);
        };
        match fallback.api.desired(&self.device) {
            Ok(Some(body)) => {
                let topic = self.inbox.topic().to_owned();
                self.deliver(driver, &topic, &body)
            }
            Ok(None) => Ok(driver.settle()?),
            Err(e) => {
                tracing::warn!(error = %e, "polling desired over HTTP");
                Ok(driver.settle()?)
            }
        }
    }

    fn announce(&mut self) -> Result<(), AppError> {
        if let Some(report) = self.last_report.clone() {
            self.send(Batch::One(Box::new(Outgoing::Report(report))))?;
        }
        Ok(())
    }

    fn flush(&mut self, driver: &mut Driver) -> Result<(), AppError> {
        for batch in codec::batches(driver.take_outbox()) {
            if let Batch::One(msg) = &batch
                && let Outgoing::Report(report) = msg.as_ref()
            {
                self.last_report = Some(report.clone());
            }
            self.send(batch)?;
        }
        Ok(())
    }

    fn send(&mut self, batch: Batch) -> Result<(), AppError> {
        let seq = self
            .seq
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_seqs(batch.seqs())?;
        let publication = batch.seal(&self.device, seq, &self.key)?;
        let (connected, now) = (self.mqtt.connected(), self.clock.now());
        let active = self.fallback.as_mut().is_some_and(|f| f.active(connected, now));
        match self.fallback.as_ref().filter(|_| active) {
            Some(fallback) => {
                let what = publication.topic.rsplit('/').next().unwrap_or_default();
                if let Err(e) = fallback.api.post(&self.device, what, &publication.payload) {
                    // The report is sent again on the next (re)connect; an event is lost.
                    tracing::warn!(error = %e, what, "posting over HTTP");
                }
            }
            None => self.mqtt.publish(publication)?,
        }
        Ok(())
    }
}

/// Online (n) and offline (n + 1) presence, signed for one connection attempt.
fn presence_signer(
    device: DeviceId,
    key: SigningKey,
    seq: Arc<Mutex<SeqCounter>>,
    clock: Arc<dyn Clock>,
) -> PresenceSigner {
    Box::new(move || {
        let pair = || -> Result<_, AppError> {
            let mut seq = seq.lock().unwrap_or_else(PoisonError::into_inner);
            let (online, offline) = (seq.next_seq()?, seq.next_seq()?);
            let now = clock.now();
            Ok((
                codec::presence(true, now, &device, online, &key)?,
                codec::presence(false, now, &device, offline, &key)?,
            ))
        };
        pair()
            .inspect_err(|e| tracing::error!(error = %e, "signing presence"))
            .ok()
    })
}
