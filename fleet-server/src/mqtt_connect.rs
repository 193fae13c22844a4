//! Reading the first packet of an MQTT connection (CONNECT, MQTT 3.1, 3.1.1 and 5) far enough to
//! learn the client id and username, so the MQTTS front can hold a device with a client certificate
//! to its own id before any byte reaches the embedded broker (rumqttd has no such hook).

use tokio::io::{AsyncRead, AsyncReadExt as _};

/// Largest CONNECT read (a last will is a signed presence message of a few hundred bytes).
pub const MAX_CONNECT: usize = 64 * 1024;

/// CONNACK refusing the connection ("not authorized": 3.1.1 return code 5).
pub const CONNACK_NOT_AUTHORIZED: [u8; 4] = [0x20, 0x02, 0x00, 0x05];

/// Who a CONNECT says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectIds {
    pub client_id: String,
    pub username: Option<String>,
}

/// Reads one CONNECT packet (fixed header and body) from `io`; `None` when the stream does not start
/// with a well-formed CONNECT of at most [`MAX_CONNECT`] bytes.
pub async fn read<R: AsyncRead + Unpin>(io: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut packet = vec![io.read_u8().await?];
    if packet[0] != 0x10 {
        return Ok(None);
    }
    let mut len = 0usize;
    for shift in [0, 7, 14, 21] {
        let b = io.read_u8().await?;
        packet.push(b);
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        if shift == 21 {
            return Ok(None);
        }
    }
    if len > MAX_CONNECT {
        return Ok(None);
    }
    let start = packet.len();
    packet.resize(start + len, 0);
    io.read_exact(&mut packet[start..]).await?;
    Ok(Some(packet))
}

/// The client id and username of a CONNECT `packet` as [`read`] returns it.
pub fn ids(packet: &[u8]) -> Option<ConnectIds> {
    let mut r = Reader { buf: packet, pos: 1 };
    r.varint()?;
    let protocol = r.string()?;
    if protocol != "MQTT" && protocol != "MQIsdp" {
        return None;
    }
    let level = r.byte()?;
    let flags = r.byte()?;
    r.take(2)?; // keep-alive
    if level == 5 {
        let props = r.varint()?;
        r.take(props)?;
    }
    let client_id = r.string()?;
    if flags & 0x04 != 0 {
        if level == 5 {
            let props = r.varint()?;
            r.take(props)?;
        }
        r.string()?;
        let n = usize::from(r.u16()?);
        r.take(n)?;
    }
    let username = match flags & 0x80 {
        0 => None,
        _ => Some(r.string()?),
    };
    Some(ConnectIds { client_id, username })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let bytes = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(bytes)
    }
    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn string(&mut self) -> Option<String> {
        let n = usize::from(self.u16()?);
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn varint(&mut self) -> Option<usize> {
        let mut value = 0usize;
        for shift in [0, 7, 14, 21] {
            let b = self.byte()?;
            value |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn string(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }

    /// A 3.1.1 CONNECT as rumqttc writes it: client id, a will, username and password.
    fn connect(client: &str, user: Option<&str>) -> Vec<u8> {
        let mut body = string("MQTT");
        let flags = 0x02 | 0x04 | 0x08 | if user.is_some() { 0xc0 } else { 0 };
        body.extend([4, flags, 0, 30]);
        body.extend(string(client));
        body.extend(string("halyard/v1/devices/x/presence"));
        body.extend(string("offline"));
        if let Some(u) = user {
            body.extend(string(u));
            body.extend(string("secret"));
        }
        let mut packet = vec![0x10, body.len() as u8];
        packet.extend(body);
        packet
    }

    #[tokio::test]
    async fn reads_client_id_and_username_of_a_connect() {
        let packet = connect("dev-a", Some("dev-a"));
        let read = read(&mut packet.as_slice()).await.unwrap().unwrap();
        assert_eq!(read, packet);
        let want = ConnectIds {
            client_id: "dev-a".into(),
            username: Some("dev-a".into()),
        };
        assert_eq!(ids(&read), Some(want));
        assert_eq!(ids(&connect("dev-b", None)).unwrap().username, None);
    }

    #[tokio::test]
    async fn refuses_what_is_not_a_connect() {
        let publish = [0x30u8, 0x02, 0x00, 0x00];
        assert_eq!(read(&mut publish.as_slice()).await.unwrap(), None);
        let huge = [0x10u8, 0xff, 0xff, 0xff, 0x7f];
        assert_eq!(read(&mut huge.as_slice()).await.unwrap(), None);
        let packet = connect("dev-a", Some("dev-a"));
        assert_eq!(
            ids(&packet[..packet.len() - 12]),
            None,
            "truncated in the username"
        );
    }
}
