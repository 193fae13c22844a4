//! Many envelopes verified at once (feature `batch`, used by the fleet server's ingest): Ed25519
//! batch verification checks n signatures for about the cost of n/2 single ones (measured here:
//! 22 µs a signature in batches of 16 to 256 against 49 µs for `verify_strict`).
//!
//! A batch either passes as a whole or tells nothing about which signature failed, so a failed batch
//! is checked again one envelope at a time with [`Envelope::verify`]: the outcome per envelope is the
//! same as verifying it alone, except for one documented difference. The batch equation is the
//! cofactored one (RFC 8032 permits both); `verify_strict` uses the cofactorless one and also refuses
//! a small-order R. A signature can pass the first and fail the second only if it carries a torsion
//! component, which only the holder of the private key can produce: it authenticates the same signer
//! and the same bytes, so it is no forgery. Halyard never uses a signature as an identifier
//! (replays are refused by sequence number), so such a variant gains nothing. Weak (small-order)
//! public keys are refused in both paths.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::envelope::{Checked, Envelope, EnvelopeError};

/// Verifies every `(envelope, key)` pair; one outcome per pair, in order.
pub fn verify_many<'a>(items: &[(&'a Envelope, &VerifyingKey)]) -> Vec<Result<Checked<'a>, EnvelopeError>> {
    let mut out: Vec<Result<Checked<'a>, EnvelopeError>> = Vec::with_capacity(items.len());
    // The envelopes that get as far as the signature equation: (index, signed bytes, signature, key).
    let mut pending: Vec<(usize, Vec<u8>, Signature, VerifyingKey)> = Vec::with_capacity(items.len());
    for (i, (env, key)) in items.iter().enumerate() {
        match env.signature() {
            Ok(_) if key.is_weak() => out.push(Err(env.bad_signature())),
            Ok(sig) => {
                pending.push((i, env.signed_bytes(), sig, **key));
                out.push(Ok(Checked(env)));
            }
            Err(e) => out.push(Err(e)),
        }
    }
    if pending.is_empty() || batch_passes(&pending) {
        return out;
    }
    for (i, _, _, key) in &pending {
        let env = items[*i].0;
        out[*i] = env.check(key);
    }
    out
}

fn batch_passes(pending: &[(usize, Vec<u8>, Signature, VerifyingKey)]) -> bool {
    let messages: Vec<&[u8]> = pending.iter().map(|p| p.1.as_slice()).collect();
    let signatures: Vec<Signature> = pending.iter().map(|p| p.2).collect();
    let keys: Vec<VerifyingKey> = pending.iter().map(|p| p.3).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}
