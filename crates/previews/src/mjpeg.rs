//! Motion JPEG over HTTP: `multipart/x-mixed-replace`, one JPEG per part with its own
//! `Content-Type` and `Content-Length`.
//!
//! Each part is handed out as one buffer that ends with the next boundary line: browsers show a
//! part when they see the boundary after it, so a part followed only later by its boundary would
//! show one picture late (Chrome's "last-but-one frame").

use bytes::{BufMut as _, Bytes, BytesMut};

/// The multipart boundary (never found in a JPEG's text headers; parts carry their length).
pub const BOUNDARY: &str = "hlsmark-preview-frame";

/// The `Content-Type` of the answer.
pub fn content_type() -> String {
    format!("multipart/x-mixed-replace; boundary={BOUNDARY}")
}

/// What the answer starts with: the first boundary line.
pub fn preamble() -> Bytes {
    Bytes::from(format!("--{BOUNDARY}\r\n"))
}

/// One part: its headers, the JPEG and the boundary that closes it.
pub fn part(jpeg: &[u8]) -> Bytes {
    let head = format!(
        "Content-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        jpeg.len()
    );
    let tail = format!("\r\n--{BOUNDARY}\r\n");
    let mut b = BytesMut::with_capacity(head.len() + jpeg.len() + tail.len());
    b.put_slice(head.as_bytes());
    b.put_slice(jpeg);
    b.put_slice(tail.as_bytes());
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_carries_its_length_and_closes_with_the_boundary() {
        let p = part(b"\xFF\xD8abc\xFF\xD9");
        let s = String::from_utf8_lossy(&p);
        assert!(s.starts_with("Content-Type: image/jpeg\r\nContent-Length: 7\r\n\r\n"));
        assert!(s.ends_with(&format!("\r\n--{BOUNDARY}\r\n")));
        assert_eq!(preamble(), format!("--{BOUNDARY}\r\n").as_bytes());
    }
}
