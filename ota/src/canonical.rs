//! Canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace, serde_json string escaping.
//!
//! The same value always gives the same bytes, so a signature over the bytes is a signature over the value.
//! Keys are sorted here explicitly rather than relying on `serde_json::Map` ordering, which a
//! `preserve_order` feature elsewhere in the build could change.

use serde::Serialize;
use serde_json::Value;

/// Serialises `value` to canonical JSON bytes.
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    let mut out = Vec::new();
    write_value(&value, &mut out)?;
    Ok(out)
}

/// Canonical bytes of an already parsed JSON value.
pub fn value_to_vec(value: &Value) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_nested_keys_and_strips_whitespace() {
        let value: Value =
            serde_json::from_str(r#"{ "b": [ {"z":1, "a":"x"} ], "a": null }"#).expect("valid JSON");
        let bytes = value_to_vec(&value).expect("serialisable");
        assert_eq!(bytes, br#"{"a":null,"b":[{"a":"x","z":1}]}"#);
    }
}
