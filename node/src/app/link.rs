//! [`Link`]: the agent's loop between the [`Driver`] and the MQTT transport. Arrivals on `desired`
//! are verified ([`Inbox`]) and fed to the driver; the driver's outbox is sealed with the device key
//! and a fresh sequence number and published; on every (re)connect the presence and the last report
//! are published again (both retained).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use halyard_protocol::{DeviceId, Report};

use super::AppError;
use crate::clock::Clock;
use crate::config::MqttSettings;
use crate::driver::{Driver, Halt, Outgoing};
use crate::identity::SeqCounter;
use crate::transport::codec::{self, Inbox};
use crate::transport::mqtt::{Inbound, Mqtt};

/// The connection to the server, as the agent loop uses it.
#[derive(Debug)]
pub struct Link {
    mqtt: Mqtt,
    inbox: Inbox,
    device: DeviceId,
    key: SigningKey,
    seq: SeqCounter,
    clock: Arc<dyn Clock>,
    last_report: Option<Report>,
}

impl Link {
    /// Connect to the broker with a pre-signed offline last will.
    pub fn connect(
        settings: &MqttSettings,
        device: DeviceId,
        key: SigningKey,
        mut seq: SeqCounter,
        server_key: VerifyingKey,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AppError> {
        let inbox = Inbox::new(device.clone(), server_key);
        let will = codec::presence(false, clock.now(), &device, seq.next_seq()?, &key)?;
        let mqtt = Mqtt::start(settings, device.as_str(), inbox.topic(), will);
        Ok(Self {
            mqtt,
            inbox,
            device,
            key,
            seq,
            clock,
            last_report: None,
        })
    }

    /// Run until the driver asks for a reboot or `stop` is set; timers run every `tick`.
    pub fn serve(
        &mut self,
        driver: &mut Driver,
        tick: Duration,
        stop: &AtomicBool,
    ) -> Result<Halt, AppError> {
        let mut halt = driver.settle()?;
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
                None => driver.settle()?,
            };
        }
    }

    /// Disconnect cleanly.
    pub fn shutdown(self) {
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

    fn announce(&mut self) -> Result<(), AppError> {
        let online = codec::presence(
            true,
            self.clock.now(),
            &self.device,
            self.seq.next_seq()?,
            &self.key,
        )?;
        self.mqtt.publish(online)?;
        if let Some(report) = self.last_report.clone() {
            self.send(&Outgoing::Report(report))?;
        }
        Ok(())
    }

    fn flush(&mut self, driver: &mut Driver) -> Result<(), AppError> {
        for msg in driver.take_outbox() {
            if let Outgoing::Report(report) = &msg {
                self.last_report = Some(report.clone());
            }
            self.send(&msg)?;
        }
        Ok(())
    }

    fn send(&mut self, msg: &Outgoing) -> Result<(), AppError> {
        let publication = codec::seal(msg, &self.device, self.seq.next_seq()?, &self.key)?;
        self.mqtt.publish(publication)?;
        Ok(())
    }
}
