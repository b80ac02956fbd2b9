//! A JSON reader for `envelope_columns`: the grammar checks, string unescaping and skipping it
//! needs, over one message's bytes (already checked to be UTF-8), refusing with a reason.

use super::Refusal;

/// Nesting allowed in the fields skipped over (a JSON column's text is a string, not nested).
const MAX_DEPTH: u32 = 64;

/// The reading position in one envelope.
pub(super) struct Reader<'a> {
    pub(super) s: &'a [u8],
    pub(super) i: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub(super) fn ws(&mut self) {
        while let Some(&b) = self.s.get(self.i) {
            if b == b' ' || b == b'\n' || b == b'\r' || b == b'\t' {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    pub(super) fn peek(&mut self) -> Result<u8, Refusal> {
        self.ws();
        self.s.get(self.i).copied().ok_or("envelope ends early")
    }

    #[inline]
    pub(super) fn expect(&mut self, b: u8) -> Result<(), Refusal> {
        if self.peek()? != b {
            return Err("not the JSON an envelope is");
        }
        self.i += 1;
        Ok(())
    }

    #[inline]
    pub(super) fn literal(&mut self, word: &[u8]) -> Result<(), Refusal> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err("not a JSON literal")
        }
    }

    /// The next value is null (consumed) or not (nothing consumed).
    #[inline]
    pub(super) fn null(&mut self) -> Result<bool, Refusal> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// A string's raw contents (between the quotes) and whether it holds escapes; checks its
    /// escapes' shape and that it has no raw control character (the message is UTF-8 already).
    #[inline]
    pub(super) fn raw_string(&mut self) -> Result<(&'a [u8], bool), Refusal> {
        self.expect(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            // eight bytes at a time while none is a quote, a backslash or a control character
            while let Some(word) = self.s.get(self.i..self.i + 8) {
                let mask = special(u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
                if mask != 0 {
                    // the lowest flagged byte is the first special one (see special)
                    self.i += (mask.trailing_zeros() / 8) as usize;
                    break;
                }
                self.i += 8;
            }
            let b = *self.s.get(self.i).ok_or("unterminated string")?;
            match b {
                b'"' => {
                    let raw = &self.s[start..self.i];
                    self.i += 1;
                    return Ok((raw, escaped));
                }
                b'\\' => {
                    escaped = true;
                    let e = *self.s.get(self.i + 1).ok_or("unterminated string")?;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'u' => {
                            let hex = self.s.get(self.i + 2..self.i + 6).ok_or("unterminated string")?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err("bad \\u escape");
                            }
                            self.i += 6;
                        }
                        _ => return Err("bad escape"),
                    }
                }
                0..=0x1f => return Err("control character in a string"),
                _ => self.i += 1,
            }
        }
    }

    /// A string's text, unescaped, appended to ``out``.
    #[inline]
    pub(super) fn string_into(&mut self, out: &mut Vec<u8>) -> Result<(), Refusal> {
        let (raw, escaped) = self.raw_string()?;
        if escaped {
            unescape(raw, out)
        } else {
            out.extend_from_slice(raw);
            Ok(())
        }
    }

    /// A JSON number's text, checked against the grammar; and whether it is an integer.
    pub(super) fn number(&mut self) -> Result<(&'a [u8], bool), Refusal> {
        self.ws();
        let s = self.s;
        let start = self.i;
        let mut i = start;
        if s.get(i) == Some(&b'-') {
            i += 1;
        }
        match s.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while s.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return Err("not a JSON number"),
        }
        let mut integer = true;
        if s.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            if !s.get(i).is_some_and(u8::is_ascii_digit) {
                return Err("not a JSON number");
            }
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if matches!(s.get(i), Some(b'e' | b'E')) {
            integer = false;
            i += 1;
            if matches!(s.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !s.get(i).is_some_and(u8::is_ascii_digit) {
                return Err("not a JSON number");
            }
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        self.i = i;
        Ok((&s[start..i], integer))
    }

    /// An integer (no fraction, no exponent), as i128 (at most 20 digits).
    pub(super) fn integer(&mut self) -> Result<i128, Refusal> {
        let (text, integer) = self.number()?;
        if !integer {
            return Err("a number with a fraction or exponent in an integer field");
        }
        let (negative, digits) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        if digits.len() > 20 {
            return Err("an integer over 20 digits");
        }
        let mut v: i128 = 0;
        for d in digits {
            v = v * 10 + i128::from(d - b'0');
        }
        if negative {
            if v == 0 {
                return Err("-0 in an integer field");
            }
            v = -v;
        }
        Ok(v)
    }

    /// Any JSON value, checked and not kept (fields the columns do not need).
    pub(super) fn skip(&mut self, depth: u32) -> Result<(), Refusal> {
        if depth > MAX_DEPTH {
            return Err("JSON nested too deep");
        }
        match self.peek()? {
            b'"' => self.raw_string().map(|_| ()),
            b'{' => {
                self.i += 1;
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.raw_string()?;
                    self.expect(b':')?;
                    self.skip(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err("not the JSON an envelope is"),
                    }
                }
            }
            b'[' => {
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.skip(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err("not the JSON an envelope is"),
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(|_| ()),
        }
    }

    /// The members of an object: calls ``member(reader, key, key_escaped)`` at each value.
    pub(super) fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, &'a [u8], bool) -> Result<(), Refusal>,
    ) -> Result<(), Refusal> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(());
        }
        loop {
            let (key, escaped) = self.raw_string()?;
            self.expect(b':')?;
            member(self, key, escaped)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err("not the JSON an envelope is"),
            }
        }
    }
}

/// A mask of the bytes of ``w`` (little-endian) that are '"', '\\' or below 0x20, by the classic
/// has-zero-byte tricks: its lowest set bit marks the first such byte exactly (a borrow only
/// flags bytes above a real match), so the caller jumps to it; zero when there is none.
#[inline]
fn special(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    zero(quote) | zero(backslash) | control
}

fn hex4(h: &[u8]) -> u32 {
    h.iter().fold(0, |v, d| {
        v * 16
            + match d {
                b'0'..=b'9' => u32::from(d - b'0'),
                b'a'..=b'f' => u32::from(d - b'a' + 10),
                _ => u32::from(d - b'A' + 10),
            }
    })
}

/// An object key's name: the key's bytes as they stand, or unescaped into ``buf`` when it had escapes.
pub(super) fn key_name<'k>(key: &'k [u8], escaped: bool, buf: &'k mut Vec<u8>) -> Result<&'k [u8], Refusal> {
    if escaped {
        unescape(key, buf)?;
        Ok(buf.as_slice())
    } else {
        Ok(key)
    }
}

/// A string's raw contents (shape already checked) unescaped into ``out``; a lone surrogate refuses.
pub(super) fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Refusal> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' {
            let next = raw[i..].iter().position(|c| *c == b'\\').map_or(raw.len(), |p| i + p);
            out.extend_from_slice(&raw[i..next]);
            i = next;
            continue;
        }
        let e = raw[i + 1];
        i += 2;
        let simple = match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            _ => 0,
        };
        if e != b'u' {
            out.push(simple);
            continue;
        }
        let mut code = hex4(&raw[i..i + 4]);
        i += 4;
        if (0xDC00..0xE000).contains(&code) {
            return Err("a lone low surrogate escape");
        }
        if (0xD800..0xDC00).contains(&code) {
            if raw.get(i..i + 2) != Some(b"\\u") {
                return Err("a lone high surrogate escape");
            }
            let low = hex4(raw.get(i + 2..i + 6).ok_or("a lone high surrogate escape")?);
            if !(0xDC00..0xE000).contains(&low) {
                return Err("a lone high surrogate escape");
            }
            i += 6;
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        }
        let c = char::from_u32(code).ok_or("a bad \\u escape")?;
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    Ok(())
}

#[inline]
pub(super) fn key_is(key: &[u8], escaped: bool, name: &[u8]) -> Result<bool, Refusal> {
    if !escaped {
        return Ok(key == name);
    }
    let mut text = Vec::with_capacity(key.len());
    unescape(key, &mut text)?;
    Ok(text == name)
}
