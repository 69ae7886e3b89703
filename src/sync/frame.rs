//! The wire format, and the only file that knows bincode: each frame is a 4-byte big-endian
//! length, then a bincode-encoded `Frame` (the protocol version and one message).
//!
//! Limits are per direction: what a proxy may send is small (a CSR is the largest), what the
//! control plane sends can be a gateway's whole config. A length over the limit is refused
//! before any of the body is read, so a hostile peer cannot make the reader allocate.

use bincode::{Decode, Encode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bumped on any incompatible change to the messages below. 2: `Hello` carries `attributes`.
pub const PROTOCOL_VERSION: u16 = 2;
/// Largest frame a proxy may send to the control plane.
pub const MAX_TO_CONTROL: usize = 64 * 1024;
/// Largest frame the control plane may send to a proxy.
pub const MAX_TO_PROXY: usize = 16 * 1024 * 1024;

/// What a proxy says to the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum ToControl {
    /// First frame of a connection without a client certificate: a join token, the identity
    /// it is for, and a CSR for a key made on the proxy's host.
    Enrol {
        token: String,
        identity: String,
        csr_pem: String,
    },
    /// First frame of a connection with a client certificate.
    Hello {
        identity: String,
        /// Where peers reach this proxy (a sidecar's inbound listener); none for gateways.
        advertise: Option<String>,
        healthy: bool,
        /// The version the proxy runs (from its cache), so an unchanged config is not resent.
        running_version: u64,
        /// A sidecar's Cloud Map attributes (`--attribute k=v`): `awsCloudMap.attributes`
        /// pick among a node's sidecars by them.
        attributes: Vec<(String, String)>,
    },
    Ack {
        version: u64,
    },
    Nack {
        version: u64,
        error: String,
    },
    /// The local app's health changed.
    Health {
        healthy: bool,
    },
    /// The proxy is shutting down: take its endpoint out now rather than after the grace.
    Draining,
    /// A CSR for a fresh key, to renew the proxy's certificate.
    Renew {
        csr_pem: String,
    },
    /// Cumulative counters per target virtual node: (node, requests, 5xx responses).
    Stats {
        targets: Vec<(String, u64, u64)>,
    },
}

/// What the control plane says to a proxy.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum ToProxy {
    /// The answer to `Enrol`: the proxy's certificate chain and the CA bundle to trust.
    Enrolled {
        chain_pem: String,
        trust_bundle_pem: String,
    },
    /// A config to apply, as the JSON `ProxyConfig` (the same text `/config` shows and the
    /// cache holds, so there is one decoder and it checks everything).
    Config { version: u64, config_json: String },
    /// A renewed certificate.
    Certificate {
        chain_pem: String,
        trust_bundle_pem: String,
    },
    /// The CA changed (rotation): trust this bundle, and renew now.
    RenewNow { trust_bundle_pem: String },
    /// The control plane will not go on with this proxy; the reason says why.
    Refused { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Frame<M> {
    pub protocol: u16,
    pub message: M,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("frame is not a valid message: {0}")]
    Malformed(String),
    #[error("frame has {0} trailing bytes after the message")]
    Trailing(usize),
    #[error("peer speaks protocol version {got}; this side speaks {PROTOCOL_VERSION}")]
    Version { got: u16 },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

fn config() -> bincode::config::Configuration<bincode::config::BigEndian> {
    bincode::config::standard().with_big_endian()
}

/// Encodes one message as a whole frame, length prefix included.
pub fn encode<M: Encode>(message: M) -> Vec<u8> {
    let frame = Frame {
        protocol: PROTOCOL_VERSION,
        message,
    };
    // Encoding these types into a Vec has no failure case (no I/O, no limit on this side).
    let body = bincode::encode_to_vec(&frame, config())
        .expect("bincode encodes frame messages into a Vec without error");
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a frame body (without its length prefix).
pub fn decode<M: Decode<()>>(body: &[u8], limit: usize) -> Result<M, FrameError> {
    if body.len() > limit {
        return Err(FrameError::TooLarge {
            len: body.len(),
            limit,
        });
    }
    // The decoder's own limit stops a claimed string length from allocating more than the
    // direction's frames could hold.
    let (frame, used): (Frame<M>, usize) = if limit <= MAX_TO_CONTROL {
        bincode::decode_from_slice(body, config().with_limit::<MAX_TO_CONTROL>())
    } else {
        bincode::decode_from_slice(body, config().with_limit::<MAX_TO_PROXY>())
    }
    .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if frame.protocol != PROTOCOL_VERSION {
        return Err(FrameError::Version {
            got: frame.protocol,
        });
    }
    if used != body.len() {
        return Err(FrameError::Trailing(body.len() - used));
    }
    Ok(frame.message)
}

/// Reads one frame; `Ok(None)` when the stream ended cleanly between frames.
pub async fn read<M: Decode<()>, R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<M>, FrameError> {
    let mut len = [0u8; 4];
    match reader.read(&mut len[..1]).await? {
        0 => return Ok(None),
        _ => read_exact(reader, &mut len[1..]).await?,
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    let mut body = vec![0u8; len];
    read_exact(reader, &mut body).await?;
    decode(&body, limit).map(Some)
}

async fn read_exact<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<(), FrameError> {
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(FrameError::Io(e)),
    }
}

/// Writes already-encoded frame bytes (see `encode`).
pub async fn write<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> Result<(), FrameError> {
    writer.write_all(bytes).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip<M: Encode + Decode<()> + Clone + PartialEq + std::fmt::Debug>(m: M) {
        let bytes = encode(m.clone());
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 4);
        let back: M = decode(&bytes[4..], MAX_TO_PROXY).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn every_message_survives_a_roundtrip() {
        roundtrip(ToControl::Enrol {
            token: "t".into(),
            identity: "mesh/m/virtualNode/n".into(),
            csr_pem: "-----BEGIN".into(),
        });
        roundtrip(ToControl::Hello {
            identity: "i".into(),
            advertise: Some("127.0.0.1:1".into()),
            healthy: true,
            running_version: 7,
            attributes: vec![("color".into(), "blue".into())],
        });
        roundtrip(ToControl::Nack {
            version: 3,
            error: "bad".into(),
        });
        roundtrip(ToControl::Stats {
            targets: vec![("white".into(), 10, 1)],
        });
        roundtrip(ToProxy::Config {
            version: u64::MAX,
            config_json: "{}".into(),
        });
        roundtrip(ToProxy::Refused {
            reason: "no".into(),
        });
    }

    #[test]
    fn a_frame_from_another_protocol_version_is_refused() {
        let other = PROTOCOL_VERSION + 1;
        let frame = Frame {
            protocol: other,
            message: ToControl::Draining,
        };
        let body = bincode::encode_to_vec(&frame, config()).unwrap();
        assert!(matches!(
            decode::<ToControl>(&body, MAX_TO_CONTROL),
            Err(FrameError::Version { got }) if got == other
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(ToControl::Draining);
        bytes.push(0);
        assert!(matches!(
            decode::<ToControl>(&bytes[4..], MAX_TO_CONTROL),
            Err(FrameError::Trailing(1))
        ));
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_reading_the_body() {
        let mut wire: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let r = read::<ToControl, _>(&mut wire, MAX_TO_CONTROL).await;
        assert!(matches!(r, Err(FrameError::TooLarge { .. })), "{r:?}");
    }

    #[tokio::test]
    async fn a_truncated_frame_is_an_error_and_a_clean_end_is_not() {
        let bytes = encode(ToControl::Health { healthy: true });
        let mut cut: &[u8] = &bytes[..bytes.len() - 1];
        assert!(matches!(
            read::<ToControl, _>(&mut cut, MAX_TO_CONTROL).await,
            Err(FrameError::Truncated)
        ));
        let mut empty: &[u8] = &[];
        assert!(read::<ToControl, _>(&mut empty, MAX_TO_CONTROL)
            .await
            .unwrap()
            .is_none());
    }

    proptest! {
        // The decoder's fuzz target: any bytes at all give a message or an error, never a
        // panic or an allocation beyond the frame's size.
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<ToControl>(&body, MAX_TO_CONTROL);
            let _ = decode::<ToProxy>(&body, MAX_TO_PROXY);
        }

        #[test]
        fn mutated_frames_never_panic_the_decoder(flip in 0usize..64, byte in any::<u8>(), version in any::<u64>()) {
            let mut bytes = encode(ToControl::Hello { identity: "mesh/m/virtualNode/n".into(), advertise: None, healthy: true, running_version: version, attributes: Vec::new() });
            let i = 4 + flip % (bytes.len() - 4);
            bytes[i] = byte;
            let _ = decode::<ToControl>(&bytes[4..], MAX_TO_CONTROL);
        }

        #[test]
        fn strings_roundtrip(s in ".{0,200}", v in any::<u64>()) {
            let m = ToControl::Nack { version: v, error: s };
            let bytes = encode(m.clone());
            prop_assert_eq!(decode::<ToControl>(&bytes[4..], MAX_TO_CONTROL).unwrap(), m);
        }
    }
}
