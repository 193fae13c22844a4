//! The signed envelope. Every message on every topic is one of these; the broker is a transport, not a
//! trust anchor.
//!
//! The signature covers a domain tag, the protocol version, the message kind, the device id, the sequence
//! number and the body bytes exactly as sent, so a message cannot be replayed on another topic, for
//! another device, or with another sequence number. The body is canonical JSON carried as a string, so the
//! signed bytes never depend on how a receiver re-serializes JSON.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::PROTOCOL_VERSION;
use crate::ids::DeviceId;

/// Largest encoded envelope a receiver parses; anything bigger is rejected before JSON parsing.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

const DOMAIN: &[u8] = b"halyard envelope\0";

/// What an envelope carries; also part of the signed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Desired,
    Report,
    Event,
    /// Several events in one envelope (the transitions of one settle): [`crate::Events`].
    Events,
    Presence,
}

impl Kind {
    fn tag(self) -> &'static [u8] {
        match self {
            Kind::Desired => b"desired",
            Kind::Report => b"report",
            Kind::Event => b"event",
            Kind::Events => b"events",
            Kind::Presence => b"presence",
        }
    }
}

/// A payload type and the envelope kind it travels as.
pub trait Payload: Serialize + DeserializeOwned {
    const KIND: Kind;
}

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope is {size} bytes, more than the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("payload could not be encoded: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("envelope is not valid JSON: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("envelope protocol version {found} is not supported (this side speaks {PROTOCOL_VERSION})")]
    Version { found: u32 },
    #[error("envelope signature is not valid base64 Ed25519")]
    SignatureEncoding,
    #[error("bad signature on {kind:?} envelope for device {device} (seq {seq})")]
    BadSignature { kind: Kind, device: DeviceId, seq: u64 },
    #[error("expected a {expected:?} envelope, got {found:?}")]
    WrongKind { expected: Kind, found: Kind },
    #[error("envelope body is not a valid {kind:?} payload: {source}")]
    Body { kind: Kind, source: serde_json::Error },
    #[error("stale {kind:?} from {device}: seq {seq} is not above the last accepted {last}")]
    Stale {
        kind: Kind,
        device: DeviceId,
        seq: u64,
        last: u64,
    },
}

/// A signed message as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub v: u32,
    pub kind: Kind,
    /// The device the message is from (device topics) or for (`desired`).
    pub device: DeviceId,
    /// Strictly increasing per (signer, device, kind); see [`SeqGuard`].
    pub seq: u64,
    /// Canonical JSON of the payload, signed byte for byte.
    pub body: String,
    /// Base64 Ed25519 signature over [`Envelope::signed_bytes`].
    pub sig: String,
}

impl Envelope {
    /// Serializes `payload` and signs it.
    pub fn seal<P: Payload>(
        payload: &P,
        device: &DeviceId,
        seq: u64,
        key: &SigningKey,
    ) -> Result<Self, EnvelopeError> {
        let body = serde_json::to_string(payload).map_err(EnvelopeError::Encode)?;
        let mut env = Self {
            v: PROTOCOL_VERSION,
            kind: P::KIND,
            device: device.clone(),
            seq,
            body,
            sig: String::new(),
        };
        env.sig = B64.encode(key.sign(&env.signed_bytes()).to_bytes());
        Ok(env)
    }

    /// The exact bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let device = self.device.as_str().as_bytes();
        let mut out = Vec::with_capacity(DOMAIN.len() + 32 + device.len() + self.body.len());
        out.extend_from_slice(DOMAIN);
        out.extend_from_slice(&self.v.to_be_bytes());
        out.extend_from_slice(self.kind.tag());
        out.push(0);
        out.extend_from_slice(device);
        out.push(0);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(self.body.as_bytes());
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope is strings and integers, which always serialize")
    }

    /// Parses wire bytes with a size cap. The result is not yet trusted: call [`Envelope::open`].
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        let env: Self = serde_json::from_slice(bytes).map_err(EnvelopeError::Malformed)?;
        if env.v != PROTOCOL_VERSION {
            return Err(EnvelopeError::Version { found: env.v });
        }
        Ok(env)
    }

    /// Checks the signature with `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), EnvelopeError> {
        key.verify_strict(&self.signed_bytes(), &self.signature()?)
            .map_err(|_| self.bad_signature())
    }

    /// The signature, decoded from base64.
    pub(crate) fn signature(&self) -> Result<Signature, EnvelopeError> {
        let raw = B64
            .decode(&self.sig)
            .map_err(|_| EnvelopeError::SignatureEncoding)?;
        let raw: [u8; 64] = raw.try_into().map_err(|_| EnvelopeError::SignatureEncoding)?;
        Ok(Signature::from_bytes(&raw))
    }

    pub(crate) fn bad_signature(&self) -> EnvelopeError {
        EnvelopeError::BadSignature {
            kind: self.kind,
            device: self.device.clone(),
            seq: self.seq,
        }
    }

    /// Verifies the signature; the result opens the body.
    pub fn check(&self, key: &VerifyingKey) -> Result<Checked<'_>, EnvelopeError> {
        self.verify(key).map(|()| Checked(self))
    }

    /// Verifies the signature, then the kind, then parses the body: nothing unverified is parsed.
    pub fn open<P: Payload>(&self, key: &VerifyingKey) -> Result<P, EnvelopeError> {
        self.check(key)?.open()
    }
}

/// An envelope whose signature checked out ([`Envelope::check`], or `batch::verify_many`): the only
/// way to a body besides [`Envelope::open`], so nothing unverified is parsed.
#[derive(Debug, Clone, Copy)]
pub struct Checked<'a>(pub(crate) &'a Envelope);

impl<'a> Checked<'a> {
    pub fn envelope(&self) -> &'a Envelope {
        self.0
    }

    /// Checks the kind, then parses the body.
    pub fn open<P: Payload>(&self) -> Result<P, EnvelopeError> {
        let env = self.0;
        if env.kind != P::KIND {
            return Err(EnvelopeError::WrongKind {
                expected: P::KIND,
                found: env.kind,
            });
        }
        serde_json::from_str(&env.body).map_err(|source| EnvelopeError::Body {
            kind: env.kind,
            source,
        })
    }
}

/// What a receiver makes of a verified envelope's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// Higher than anything seen: process it.
    Fresh,
    /// The same as the last accepted: a redelivery (QoS 1) or a retained message replayed; ignore quietly.
    Duplicate,
}

/// Tracks the last accepted sequence number per (device, kind) and refuses stale ones.
#[derive(Debug, Default, Clone)]
pub struct SeqGuard {
    last: HashMap<(DeviceId, Kind), u64>,
}

impl SeqGuard {
    /// Starts from sequence numbers persisted earlier.
    pub fn restore(entries: impl IntoIterator<Item = ((DeviceId, Kind), u64)>) -> Self {
        Self {
            last: entries.into_iter().collect(),
        }
    }

    /// Call only after [`Envelope::verify`] succeeded; records the sequence number when fresh.
    pub fn check(&mut self, env: &Envelope) -> Result<SeqVerdict, EnvelopeError> {
        let key = (env.device.clone(), env.kind);
        match self.last.get(&key).copied() {
            Some(last) if env.seq < last => Err(EnvelopeError::Stale {
                kind: env.kind,
                device: env.device.clone(),
                seq: env.seq,
                last,
            }),
            Some(last) if env.seq == last => Ok(SeqVerdict::Duplicate),
            _ => {
                self.last.insert(key, env.seq);
                Ok(SeqVerdict::Fresh)
            }
        }
    }

    pub fn last(&self, device: &DeviceId, kind: Kind) -> Option<u64> {
        self.last.get(&(device.clone(), kind)).copied()
    }
}
