//! JWS compact serialization: the checks that run before any parsing.
//!
//! RFC 7515 section 7.1: three segments of unpadded base64url. Everything is
//! rejected that a lenient decoder would quietly fix (padding, '+', '/',
//! whitespace, a "Bearer " prefix, non-zero trailing bits), because a token
//! with two spellings could be cached, compared or logged under the wrong one.
//!
//! Uses `error` only.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::{Error, Part, Result};

/// The three segments of a token, still encoded.
#[derive(Debug, Clone, Copy)]
pub struct Segments<'a> {
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
}

/// The bytes a compact token may contain: base64url and '.'.
static ALLOWED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.';
        b += 1;
    }
    table
};

/// Size, alphabet and segment checks; no decoding yet.
pub fn split(token: &str, max_bytes: usize) -> Result<Segments<'_>> {
    if token.is_empty() {
        return Err(Error::Empty);
    }
    if token.len() > max_bytes {
        return Err(Error::TooLarge {
            size: token.len(),
            limit: max_bytes,
        });
    }
    // The alphabet is checked by the base64 decoder, segment by segment
    // (see `decode`); here only the dots are found (memchr, vectorized).
    let bytes = token.as_bytes();
    let first = token.find('.');
    let second = first.and_then(|f| token[f + 1..].find('.').map(|s| f + 1 + s));
    let (first, second) = match (first, second) {
        (Some(f), Some(s)) if !token[s + 1..].contains('.') => (f, s),
        _ => {
            let count = bytes.iter().filter(|&&b| b == b'.').count();
            return Err(if has_bad_character(bytes) {
                Error::BadCharacter
            } else {
                Error::SegmentCount(count + 1)
            });
        }
    };
    let segments = Segments {
        header: &token[..first],
        payload: &token[first + 1..second],
        signature: &token[second + 1..],
        signing_input: &token[..second],
    };
    for (segment, part) in [
        (segments.header, Part::Header),
        (segments.payload, Part::Payload),
    ] {
        if segment.is_empty() {
            return Err(if has_bad_character(bytes) {
                Error::BadCharacter
            } else {
                Error::Base64(part)
            });
        }
    }
    // An empty signature is refused by `decode`, after the header has been
    // read, so that an unsecured (alg "none") token is named as such.
    Ok(segments)
}

/// Strict base64url: no padding, canonical trailing bits (the engine rejects
/// non-zero unused bits and impossible lengths).
/// A segment with a byte outside base64url (padding, '+', '/', whitespace,
/// anything non-ASCII) is reported as such, before its encoding is judged.
pub fn decode(segment: &str, part: Part) -> Result<Vec<u8>> {
    if segment.is_empty() {
        return Err(Error::Base64(part));
    }
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| {
        if has_bad_character(segment.as_bytes()) {
            Error::BadCharacter
        } else {
            Error::Base64(part)
        }
    })
}

fn has_bad_character(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| !ALLOWED[usize::from(b)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_before_parsing() {
        assert_eq!(split("", 100).unwrap_err(), Error::Empty);
        assert!(matches!(
            split("a.b.c", 4),
            Err(Error::TooLarge { size: 5, limit: 4 })
        ));
        for bad in ["a.b.c.=", "a+b.c.d.e", "a b", "a.b.c\n.", " .b"] {
            assert_eq!(split(bad, 100).unwrap_err(), Error::BadCharacter, "{bad:?}");
        }
        // Within three segments, the decoder finds the stray bytes.
        for bad in [
            "QQ.QQ.QQ=",
            "Q+Q.QQ.QQ",
            "Q/Q.QQ.QQ",
            "QQ. QQ.QQ",
            "QQ.QQ.QQ\n",
            "Bearer QQ.QQ.QQ",
            "QQ.QQ.Q\0",
        ] {
            let s = split(bad, 100).unwrap();
            let decoded = [
                (s.header, Part::Header),
                (s.payload, Part::Payload),
                (s.signature, Part::Signature),
            ]
            .into_iter()
            .map(|(seg, part)| decode(seg, part))
            .find(|r| r.is_err());
            assert_eq!(decoded, Some(Err(Error::BadCharacter)), "{bad:?}");
        }
        assert_eq!(split("a.b", 100).unwrap_err(), Error::SegmentCount(2));
        assert_eq!(split("a.b.c.d", 100).unwrap_err(), Error::SegmentCount(4));
        assert_eq!(split("a.b.c.d.e", 100).unwrap_err(), Error::SegmentCount(5));
        assert_eq!(
            decode("", Part::Signature).unwrap_err(),
            Error::Base64(Part::Signature)
        );
        assert_eq!(split(".b.c", 100).unwrap_err(), Error::Base64(Part::Header));
        let s = split("aa.bb.cc", 100).unwrap();
        assert_eq!(
            (s.header, s.payload, s.signature, s.signing_input),
            ("aa", "bb", "cc", "aa.bb")
        );
    }

    #[test]
    fn base64url_is_canonical() {
        assert_eq!(decode("QQ", Part::Header).unwrap(), b"A");
        // "QR" carries non-zero unused bits: the same byte with another spelling.
        assert_eq!(
            decode("QR", Part::Header).unwrap_err(),
            Error::Base64(Part::Header)
        );
        // A length of 4n+1 cannot be base64.
        assert!(decode("QUJDR", Part::Payload).is_err());
    }
}
