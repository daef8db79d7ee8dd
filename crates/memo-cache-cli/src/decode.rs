//! Stored values as JSON, for `show --value`, without knowing the Rust type that stored them.
//!
//! The last byte of a stored value names its format (see `memo_cache::codec`). MessagePack
//! describes itself, so it maps onto JSON directly; raw byte vectors become base64 text; numeric
//! arrays become JSON arrays. Byte strings inside MessagePack also become base64 text, map keys
//! that are not strings become their JSON text, and non-finite floats become strings.

use base64::Engine;
use memo_cache::codec;
use serde_json::{Map, Number, Value, json};

/// The JSON form of stored bytes, or why there is none.
pub fn to_json(stored: &[u8]) -> Result<Value, String> {
    let (format, payload) = codec::split(stored).ok_or("the stored value is empty")?;
    match format {
        codec::FORMAT_MSGPACK => {
            let mut rest = payload;
            let value = rmpv::decode::read_value(&mut rest)
                .map_err(|e| format!("not valid MessagePack: {e}"))?;
            if !rest.is_empty() {
                return Err(format!("{} bytes after the MessagePack value", rest.len()));
            }
            Ok(msgpack(value))
        }
        codec::FORMAT_BYTES => Ok(json!({ "base64": base64(payload) })),
        codec::FORMAT_F64 => numbers::<8>(payload, |b| float(f64::from_le_bytes(b))),
        codec::FORMAT_F32 => numbers::<4>(payload, |b| float(f64::from(f32::from_le_bytes(b)))),
        codec::FORMAT_I64 => numbers::<8>(payload, |b| Value::from(i64::from_le_bytes(b))),
        codec::FORMAT_U64 => numbers::<8>(payload, |b| Value::from(u64::from_le_bytes(b))),
        codec::FORMAT_I32 => numbers::<4>(payload, |b| Value::from(i32::from_le_bytes(b))),
        codec::FORMAT_U32 => numbers::<4>(payload, |b| Value::from(u32::from_le_bytes(b))),
        other => Err(format!(
            "unknown value format 0x{other:02x}; a newer memo-cache may have stored it"
        )),
    }
}

/// The name of a stored value's format, for `show`.
pub fn format_name(stored: &[u8]) -> &'static str {
    match codec::split(stored).map(|(f, _)| f) {
        Some(codec::FORMAT_MSGPACK) => "msgpack",
        Some(codec::FORMAT_BYTES) => "bytes",
        Some(codec::FORMAT_F64) => "f64 array",
        Some(codec::FORMAT_F32) => "f32 array",
        Some(codec::FORMAT_I64) => "i64 array",
        Some(codec::FORMAT_U64) => "u64 array",
        Some(codec::FORMAT_I32) => "i32 array",
        Some(codec::FORMAT_U32) => "u32 array",
        _ => "unknown",
    }
}

fn numbers<const N: usize>(
    payload: &[u8],
    item: impl Fn([u8; N]) -> Value,
) -> Result<Value, String> {
    if !payload.len().is_multiple_of(N) {
        return Err(format!(
            "a numeric array of {N}-byte items cannot be {} bytes long",
            payload.len()
        ));
    }
    Ok(Value::Array(
        payload
            .chunks_exact(N)
            .map(|c| item(c.try_into().expect("chunks of N bytes")))
            .collect(),
    ))
}

fn float(x: f64) -> Value {
    Number::from_f64(x).map_or_else(|| Value::String(x.to_string()), Value::Number)
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn msgpack(value: rmpv::Value) -> Value {
    use rmpv::Value as M;
    match value {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(b),
        M::Integer(i) => i
            .as_u64()
            .map(Value::from)
            .or_else(|| i.as_i64().map(Value::from))
            .unwrap_or(Value::Null),
        M::F32(x) => float(f64::from(x)),
        M::F64(x) => float(x),
        M::String(s) => match s.into_str() {
            Some(s) => Value::String(s),
            None => Value::String("<invalid UTF-8>".into()),
        },
        M::Binary(bytes) => Value::String(base64(&bytes)),
        M::Array(items) => Value::Array(items.into_iter().map(msgpack).collect()),
        M::Map(pairs) => {
            let mut map = Map::with_capacity(pairs.len());
            for (k, v) in pairs {
                let key = match msgpack(k) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                map.insert(key, msgpack(v));
            }
            Value::Object(map)
        }
        M::Ext(tag, data) => json!({ "ext": tag, "base64": base64(&data) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_becomes_json() {
        #[derive(serde::Serialize)]
        struct Point {
            x: i32,
            label: String,
            tags: Vec<u8>,
        }
        let stored = codec::encode(&Point {
            x: -3,
            label: "p".into(),
            tags: vec![1, 2],
        })
        .unwrap();
        assert_eq!(
            to_json(&stored).unwrap(),
            json!({"x": -3, "label": "p", "tags": "AQI="})
        );
        assert_eq!(
            to_json(&codec::encode(&vec![1.5f64, -2.0]).unwrap()).unwrap(),
            json!([1.5, -2.0])
        );
        assert_eq!(
            to_json(&codec::encode(&vec![7u32]).unwrap()).unwrap(),
            json!([7])
        );
        assert_eq!(
            to_json(&codec::encode(&vec![0u8, 255]).unwrap()).unwrap(),
            json!({"base64": "AP8="})
        );
        assert!(to_json(&[1, 2, 3, 0x7f]).unwrap_err().contains("0x7f"));
        assert!(to_json(&[]).is_err());
    }
}
