//! The pure half of the MQTT transport (rumqtt style: no I/O here). [`Inbox`] turns what arrives on the
//! device's `desired` topic into a verified [`Desired`], or says why not; [`seal`] turns the driver's
//! [`Outgoing`] messages and presence into signed [`Publication`]s for their topics, and [`batches`]
//! puts the events of one settle into one message.

use ed25519_dalek::{SigningKey, VerifyingKey};
use halyard_protocol::topics::Topic;
use halyard_protocol::{
    Desired, DeviceId, Envelope, EnvelopeError, Event, Events, MAX_EVENTS_PER_ENVELOPE, Presence, SeqGuard,
    SeqVerdict,
};

use crate::driver::Outgoing;

/// A message ready for the broker (always QoS 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Full topic.
    pub topic: String,
    /// Encoded envelope.
    pub payload: Vec<u8>,
    /// Retained on the broker.
    pub retain: bool,
}

/// Why an inbound message was ignored.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// Not this device's `desired` topic.
    #[error("unexpected topic {topic}")]
    Topic {
        /// The topic.
        topic: String,
    },
    /// Addressed to another device.
    #[error("desired for device {found}, this is {expected}")]
    Device {
        /// Who it was for.
        found: DeviceId,
        /// Us.
        expected: DeviceId,
    },
    /// Malformed, badly signed or stale.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// Verifies the server's messages for one device.
#[derive(Debug)]
pub struct Inbox {
    device: DeviceId,
    topic: String,
    server_key: VerifyingKey,
    guard: SeqGuard,
}

impl Inbox {
    /// For `device`, trusting `server_key`.
    pub fn new(device: DeviceId, server_key: VerifyingKey) -> Self {
        Self {
            topic: Topic::Desired.for_device(&device),
            device,
            server_key,
            guard: SeqGuard::default(),
        }
    }

    /// The topic to subscribe to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// `Ok(Some)` for a fresh, verified desired state; `Ok(None)` for a redelivery of the last one.
    pub fn accept(&mut self, topic: &str, payload: &[u8]) -> Result<Option<Desired>, Rejected> {
        if topic != self.topic {
            return Err(Rejected::Topic {
                topic: topic.to_owned(),
            });
        }
        let env = Envelope::decode(payload)?;
        if env.device != self.device {
            return Err(Rejected::Device {
                found: env.device,
                expected: self.device.clone(),
            });
        }
        let desired: Desired = env.open(&self.server_key)?;
        match self.guard.check(&env)? {
            SeqVerdict::Fresh => Ok(Some(desired)),
            SeqVerdict::Duplicate => Ok(None),
        }
    }
}

/// Seal a driver message with the device key and sequence number `seq`.
pub fn seal(
    msg: &Outgoing,
    device: &DeviceId,
    seq: u64,
    key: &SigningKey,
) -> Result<Publication, EnvelopeError> {
    let (topic, env, retain) = match msg {
        Outgoing::Event(event) => (Topic::Events, Envelope::seal(event, device, seq, key)?, false),
        Outgoing::Report(report) => (Topic::Report, Envelope::seal(report, device, seq, key)?, true),
    };
    Ok(Publication {
        topic: topic.for_device(device),
        payload: env.encode(),
        retain,
    })
}

/// A message to sign, from the driver's outbox: the report, or a run of events that followed one
/// another (the transitions of one settle), which travel in one `events` envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batch {
    /// One message as the driver queued it.
    One(Box<Outgoing>),
    /// Two or more events (at most [`MAX_EVENTS_PER_ENVELOPE`]), in order.
    Events(Vec<Event>),
}

impl Batch {
    /// How many sequence numbers the message takes (one per event).
    pub fn seqs(&self) -> u64 {
        match self {
            Batch::One(_) => 1,
            Batch::Events(events) => events.len() as u64,
        }
    }

    /// Sign with the last of the message's [`Batch::seqs`] consecutive numbers, `last_seq`.
    pub fn seal(
        &self,
        device: &DeviceId,
        last_seq: u64,
        key: &SigningKey,
    ) -> Result<Publication, EnvelopeError> {
        match self {
            Batch::One(msg) => seal(msg, device, last_seq, key),
            Batch::Events(events) => {
                let body = Events {
                    events: events.clone(),
                };
                Ok(Publication {
                    topic: Topic::Events.for_device(device),
                    payload: Envelope::seal(&body, device, last_seq, key)?.encode(),
                    retain: false,
                })
            }
        }
    }
}

/// The outbox as messages to sign, in order: each run of two or more events becomes one
/// [`Batch::Events`] (a lone event keeps the single `event` form).
pub fn batches(outbox: Vec<Outgoing>) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut run: Vec<Event> = Vec::new();
    let end_run = |run: &mut Vec<Event>, out: &mut Vec<Batch>| match run.len() {
        0 => {}
        1 => out.extend(run.pop().map(|e| Batch::One(Box::new(Outgoing::Event(e))))),
        _ => out.push(Batch::Events(std::mem::take(run))),
    };
    for msg in outbox {
        match msg {
            Outgoing::Event(e) => {
                if run.len() == MAX_EVENTS_PER_ENVELOPE {
                    end_run(&mut run, &mut out);
                }
                run.push(e);
            }
            other => {
                end_run(&mut run, &mut out);
                out.push(Batch::One(Box::new(other)));
            }
        }
    }
    end_run(&mut run, &mut out);
    out
}

/// The retained presence message (online, or the offline last will).
pub fn presence(
    online: bool,
    at: u64,
    device: &DeviceId,
    seq: u64,
    key: &SigningKey,
) -> Result<Publication, EnvelopeError> {
    let env = Envelope::seal(&Presence { online, at }, device, seq, key)?;
    Ok(Publication {
        topic: Topic::Presence.for_device(device),
        payload: env.encode(),
        retain: true,
    })
}

/// Reconnect delay for the `attempt`-th failure in a row: `min · 2^attempt` capped at `max`, of which
/// a random half (from `noise`) is dropped so a fleet that lost its broker does not return in lockstep.
pub fn backoff(
    attempt: u32,
    min: std::time::Duration,
    max: std::time::Duration,
    noise: u64,
) -> std::time::Duration {
    let ceiling = min.saturating_mul(1u32 << attempt.min(16)).min(max);
    let half = ceiling / 2;
    let millis = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
    half + std::time::Duration::from_millis(noise % millis)
}
