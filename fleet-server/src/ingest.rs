//! Device messages in: decode the envelope, check it is for the device and topic it arrived on, verify
//! the device's signature, parse the payload, then store it with its sequence number (the store
//! refuses replays atomically). Used by the MQTT subscriber and the HTTPS fallback alike.

use std::time::Instant;

use ed25519_dalek::VerifyingKey;
use halyard_protocol::batch::verify_many;
use halyard_protocol::{
    Checked, DeviceId, Envelope, EnvelopeError, Event, Events, Kind, Presence, Report, Topic,
};

use crate::app::App;
use crate::model::DeviceEvent;
use crate::store::{Ingest, IngestItem, StoreError};

/// Why a device message was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("envelope is for device {inner}, but arrived for {outer}")]
    WrongDevice { outer: DeviceId, inner: DeviceId },
    #[error("{kind:?} envelope cannot arrive on the {topic:?} topic")]
    WrongTopic { kind: Kind, topic: Topic },
    #[error("device {0} is not enrolled")]
    UnknownDevice(DeviceId),
    /// A duplicate, a report not newer than the stored one, or an event outside the replay window.
    #[error("stale {kind:?} from {device}: seq {seq} was seen already or is too old")]
    Replay { device: DeviceId, kind: Kind, seq: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An `events` envelope with no event, or a sequence number too small for its events.
    #[error("events envelope with seq {seq} numbers no event")]
    NoEvents { seq: u64 },
    /// A verification task died (the server is stopping).
    #[error("verification did not finish: {0}")]
    Unfinished(String),
}

/// A verified message, ready to store: one item, or one per event of an `events` envelope.
#[derive(Debug)]
pub struct Verified {
    pub items: Vec<IngestItem>,
    pub received: Instant,
}

/// Whether an envelope of `kind` may arrive on `topic`.
fn fits(topic: Topic, kind: Kind) -> bool {
    matches!(
        (topic, kind),
        (Topic::Report, Kind::Report)
            | (Topic::Events, Kind::Event | Kind::Events)
            | (Topic::Presence, Kind::Presence)
    )
}

async fn device_key(app: &App, id: &DeviceId) -> Result<VerifyingKey, IngestError> {
    if let Some(k) = app.device_keys.read().ok().and_then(|m| m.get(id).copied()) {
        return Ok(k);
    }
    let wanted = id.clone();
    let device = app
        .db(move |s| s.device(&wanted))
        .await?
        .ok_or_else(|| IngestError::UnknownDevice(id.clone()))?;
    let raw: [u8; 32] = hex::decode(&device.public_key)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt {
            what: "device key",
            reason: id.to_string(),
        })?;
    let key = VerifyingKey::from_bytes(&raw).map_err(|e| StoreError::Corrupt {
        what: "device key",
        reason: e.to_string(),
    })?;
    if let Ok(mut m) = app.device_keys.write() {
        m.insert(id.clone(), key);
    }
    Ok(key)
}

/// A message decoded and matched to its device's key; its signature is not checked yet.
struct Prepared {
    env: Envelope,
    key: VerifyingKey,
    received: Instant,
}

async fn prepare(app: &App, device: &DeviceId, topic: Topic, bytes: &[u8]) -> Result<Prepared, IngestError> {
    let received = Instant::now();
    let env = Envelope::decode(bytes)?;
    if &env.device != device {
        return Err(IngestError::WrongDevice {
            outer: device.clone(),
            inner: env.device,
        });
    }
    if !fits(topic, env.kind) {
        return Err(IngestError::WrongTopic {
            kind: env.kind,
            topic,
        });
    }
    let key = device_key(app, device).await?;
    Ok(Prepared { env, key, received })
}

/// Parses the body of a message whose signature checked out.
fn finish(checked: Checked<'_>, received: Instant) -> Result<Verified, IngestError> {
    let env = checked.envelope();
    let item = |kind, seq, msg| IngestItem {
        device: env.device.clone(),
        kind,
        seq,
        msg,
    };
    let items = match env.kind {
        Kind::Report => vec![item(
            Kind::Report,
            env.seq,
            Ingest::Report(Box::new(checked.open::<Report>()?)),
        )],
        Kind::Presence => vec![item(
            Kind::Presence,
            env.seq,
            Ingest::Presence {
                online: checked.open::<Presence>()?.online,
            },
        )],
        Kind::Event => {
            let event = device_event(&env.device, env.seq, checked.open::<Event>()?);
            vec![item(Kind::Event, env.seq, Ingest::Event(event))]
        }
        Kind::Events => checked
            .open::<Events>()?
            .numbered(env.seq)
            .ok_or(IngestError::NoEvents { seq: env.seq })?
            .into_iter()
            .map(|(seq, e)| item(Kind::Event, seq, Ingest::Event(device_event(&env.device, seq, e))))
            .collect(),
        // prepare() refuses these already: no device topic carries them.
        Kind::Desired => {
            return Err(IngestError::Envelope(EnvelopeError::WrongKind {
                expected: Kind::Event,
                found: Kind::Desired,
            }));
        }
    };
    Ok(Verified { items, received })
}

/// Verifies one message that arrived for `device` on `topic`.
pub async fn verify(
    app: &App,
    device: &DeviceId,
    topic: Topic,
    bytes: &[u8],
) -> Result<Verified, IngestError> {
    let p = prepare(app, device, topic, bytes).await?;
    finish(p.env.check(&p.key)?, p.received)
}

/// The fewest envelopes a blocking thread is given: a batch is split into one chunk per core, each
/// checked as one signature batch, unless the chunks would be smaller than this; a batch that small
/// is checked on the calling task.
const VERIFY_CHUNK: usize = 64;

/// Verifies many messages (`(device, topic, bytes)` as they arrived): their signatures are checked
/// in batches ([`halyard_protocol::batch`]), spread over the machine's cores. One outcome per message,
/// in order, the same as [`verify`] gives each.
pub async fn verify_batch(
    app: &App,
    raw: Vec<(DeviceId, Topic, Vec<u8>)>,
) -> Vec<Result<Verified, IngestError>> {
    let mut prepared = Vec::with_capacity(raw.len());
    for (device, topic, bytes) in &raw {
        prepared.push(prepare(app, device, *topic, bytes).await);
    }
    drop(raw);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let size = prepared.len().div_ceil(cores).max(VERIFY_CHUNK);
    if prepared.len() <= size {
        return check_chunk(prepared);
    }
    let mut tasks = Vec::new();
    let mut rest = prepared.into_iter().peekable();
    while rest.peek().is_some() {
        let chunk: Vec<_> = rest.by_ref().take(size).collect();
        let n = chunk.len();
        tasks.push((n, tokio::task::spawn_blocking(move || check_chunk(chunk))));
    }
    let mut out = Vec::new();
    for (n, task) in tasks {
        match task.await {
            Ok(results) => out.extend(results),
            Err(e) => out.extend((0..n).map(|_| Err(IngestError::Unfinished(e.to_string())))),
        }
    }
    out
}

fn check_chunk(chunk: Vec<Result<Prepared, IngestError>>) -> Vec<Result<Verified, IngestError>> {
    let ok: Vec<&Prepared> = chunk.iter().filter_map(|p| p.as_ref().ok()).collect();
    let ready: Vec<(&Envelope, &VerifyingKey)> = ok.iter().map(|p| (&p.env, &p.key)).collect();
    let outcomes: Vec<Result<Verified, IngestError>> = verify_many(&ready)
        .into_iter()
        .zip(&ok)
        .map(|(c, p)| finish(c?, p.received))
        .collect();
    let mut outcomes = outcomes.into_iter();
    chunk
        .into_iter()
        .map(|p| match p {
            Err(e) => Err(e),
            Ok(_) => outcomes
                .next()
                .unwrap_or_else(|| Err(IngestError::Unfinished("a batch outcome is missing".into()))),
        })
        .collect()
}

fn device_event(device: &DeviceId, seq: u64, e: Event) -> DeviceEvent {
    let name = |s: &halyard_protocol::AgentState| {
        serde_json::to_value(s)
            .ok()
            .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(str::to_owned))
            .unwrap_or_default()
    };
    DeviceEvent {
        device: device.clone(),
        seq,
        at: e.at as i64,
        rollout: e.rollout,
        from: name(&e.from),
        to: name(&e.to),
        reason: e.reason,
    }
}

/// Stores a batch of verified messages in one transaction, as received at `now` (seconds since the
/// epoch on the server's clock); returns one outcome per message. A message of several events is
/// stored when any of them is new (the others were seen already), and is a replay when none is.
pub async fn store_batch(app: &App, batch: Vec<Verified>, now: i64) -> Vec<Result<(), IngestError>> {
    store_batches(app, vec![(batch, now)])
        .await
        .pop()
        .unwrap_or_default()
}

/// [`store_batch`] for several batches in order, each with the time it arrived, in one transaction
/// when all of them store cleanly; one outcome per message of each batch.
pub async fn store_batches(
    app: &App,
    groups: Vec<(Vec<Verified>, i64)>,
) -> Vec<Vec<Result<(), IngestError>>> {
    let items: Vec<(Vec<IngestItem>, i64)> = groups
        .iter()
        .map(|(batch, now)| (batch.iter().flat_map(|v| v.items.iter().cloned()).collect(), *now))
        .collect();
    let results = match app.db(move |s| s.ingest_batches(&items)).await {
        Ok(r) => r,
        Err(e) => {
            let msg = e.to_string();
            return groups
                .iter()
                .map(|(batch, _)| {
                    batch
                        .iter()
                        .map(|_| Err(StoreError::Backend(msg.clone()).into()))
                        .collect()
                })
                .collect();
        }
    };
    let mut wake = false;
    let out = groups
        .iter()
        .zip(results)
        .map(|((batch, _), results)| {
            let mut results = results.into_iter();
            batch
                .iter()
                .map(|v| {
                    let mine: Vec<_> = results.by_ref().take(v.items.len()).collect();
                    account(app, v, mine, &mut wake)
                })
                .collect()
        })
        .collect();
    if wake {
        app.reports.notify_one();
    }
    out
}

fn account(
    app: &App,
    v: &Verified,
    results: Vec<Result<bool, StoreError>>,
    wake: &mut bool,
) -> Result<(), IngestError> {
    use std::sync::atomic::Ordering::Relaxed;
    // The metrics count messages (envelopes), as they did before one message could carry several
    // events: stored when any of its items was, a duplicate when none was.
    let mut stored = false;
    for (item, r) in v.items.iter().zip(results) {
        match r {
            Ok(true) => {
                stored = true;
                *wake |= item.kind != Kind::Presence;
            }
            Ok(false) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match (stored, v.items.last()) {
        (true, Some(item)) => {
            app.metrics.ingested.fetch_add(1, Relaxed);
            app.metrics
                .observe_ingest(v.received.elapsed().as_micros() as u64);
            app.notify("device", item.device.as_str());
            Ok(())
        }
        (_, Some(item)) => {
            app.metrics.duplicates.fetch_add(1, Relaxed);
            Err(IngestError::Replay {
                device: item.device.clone(),
                kind: item.kind,
                seq: item.seq,
            })
        }
        (_, None) => Err(IngestError::Unfinished("a message without items".into())),
    }
}

/// Verifies and stores one message (the HTTPS fallback path).
pub async fn one(app: &App, device: &DeviceId, topic: Topic, bytes: &[u8]) -> Result<(), IngestError> {
    let verified = verify(app, device, topic, bytes)
        .await
        .inspect_err(|e| reject(app, device, e))?;
    store_batch(app, vec![verified], app.now())
        .await
        .pop()
        .unwrap_or(Ok(()))
}

/// What became of a batch of device messages.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub stored: usize,
    /// Seen before (an MQTT redelivery, say): dropped without a warning.
    pub replays: usize,
    /// Refused, each logged and counted by [`reject`].
    pub refused: usize,
}

/// Verifies (signatures in batches, [`verify_batch`]) and stores (one transaction, [`store_batch`])
/// messages as they arrived for `(device, topic)`, received at `now`. The MQTT ingest worker's path.
pub async fn take_batch(app: &App, raw: Vec<(DeviceId, Topic, Vec<u8>)>, now: i64) -> Taken {
    take_batches(app, vec![(raw, now)])
        .await
        .pop()
        .unwrap_or_default()
}

/// Messages as they arrived for `(device, topic)`.
pub type Arrived = Vec<(DeviceId, Topic, Vec<u8>)>;

/// [`take_batch`] for several batches in order, each with the time it arrived: their signatures
/// are checked together and they are stored together ([`store_batches`]); one [`Taken`] per batch.
pub async fn take_batches(app: &App, groups: Vec<(Arrived, i64)>) -> Vec<Taken> {
    let mut taken = vec![Taken::default(); groups.len()];
    let mut verified: Vec<(Vec<Verified>, i64)> = groups.iter().map(|(_, now)| (Vec::new(), *now)).collect();
    let owner: Vec<(usize, DeviceId)> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, (raw, _))| raw.iter().map(move |(d, _, _)| (g, d.clone())))
        .collect();
    let raw: Vec<_> = groups.into_iter().flat_map(|(raw, _)| raw).collect();
    for ((g, device), r) in owner.iter().zip(verify_batch(app, raw).await) {
        match r {
            Ok(v) => verified[*g].0.push(v),
            Err(e) => {
                reject(app, device, &e);
                taken[*g].refused += 1;
            }
        }
    }
    let devices: Vec<Vec<DeviceId>> = verified
        .iter()
        .map(|(batch, _)| {
            batch
                .iter()
                .filter_map(|v| v.items.first().map(|i| i.device.clone()))
                .collect()
        })
        .collect();
    for (g, results) in store_batches(app, verified).await.into_iter().enumerate() {
        for (device, r) in devices[g].iter().zip(results) {
            match r {
                Ok(()) => taken[g].stored += 1,
                Err(IngestError::Replay { .. }) => taken[g].replays += 1,
                Err(e) => {
                    reject(app, device, &e);
                    taken[g].refused += 1;
                }
            }
        }
    }
    taken
}

/// Logs and counts a refused message.
pub fn reject(app: &App, device: &DeviceId, e: &IngestError) {
    app.metrics
        .rejected
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(device = %device, error = %e, "device message rejected");
}
