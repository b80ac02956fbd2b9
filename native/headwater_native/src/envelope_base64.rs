//! Strict, padded base64 (RFC 4648's standard alphabet), what `json_values` writes for a binary
//! column: anything else (a misplaced or missing '=', bits set past the last byte, another
//! alphabet) refuses, and the chunk goes the way that reproduces the lenient decode.

use super::Refusal;

const INVALID: u8 = 0xff;

const fn table() -> [u8; 256] {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
}

static VALUES: [u8; 256] = table();

const NOT_BASE64: Refusal = "text in a binary column that is not strict base64";

/// ``text`` decoded, appended to ``out``.
pub(super) fn decode(text: &[u8], out: &mut Vec<u8>) -> Result<(), Refusal> {
    if text.len() % 4 != 0 {
        return Err(NOT_BASE64);
    }
    let Some((body, last)) = text.split_last_chunk::<4>() else {
        return Ok(()); // empty
    };
    out.reserve(text.len() / 4 * 3);
    for group in body.chunks_exact(4) {
        let mut n: u32 = 0;
        for &c in group {
            let v = VALUES[c as usize];
            if v == INVALID {
                return Err(NOT_BASE64);
            }
            n = (n << 6) | u32::from(v);
        }
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    let pads = last.iter().rev().take_while(|c| **c == b'=').count();
    if pads > 2 {
        return Err(NOT_BASE64);
    }
    let mut n: u32 = 0;
    for &c in &last[..4 - pads] {
        let v = VALUES[c as usize];
        if v == INVALID {
            return Err(NOT_BASE64);
        }
        n = (n << 6) | u32::from(v);
    }
    n <<= 6 * pads as u32;
    let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
    let kept = 3 - pads;
    // the bits after the last byte must be zero, as the encoder leaves them
    if bytes[kept..].iter().any(|b| *b != 0) {
        return Err(NOT_BASE64);
    }
    out.extend_from_slice(&bytes[..kept]);
    Ok(())
}
