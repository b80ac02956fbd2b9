//! A column's buffers as `envelope_columns` fills them: validity bitmap, values (or offsets), text,
//! and for base64 text the bytes it decodes to; Arrow's layouts, so pyarrow wraps them as they are.

use super::base64;
use super::{Cell, Refusal};
use super::{BASE64, BOOL, FLOAT64, INT16, INT32, INT64, INT8, STRING, UINT16, UINT32, UINT8};

/// A column's buffers as they fill.
pub(super) struct ColumnOut {
    pub(super) kind: u8,
    pub(super) len: usize,
    pub(super) nulls: usize,
    pub(super) validity: Vec<u8>,
    pub(super) values: Vec<u8>,
    pub(super) data: Vec<u8>,
    pub(super) decoded_offsets: Vec<u8>,
    pub(super) decoded: Vec<u8>,
}

impl ColumnOut {
    pub(super) fn new(kind: u8, n: usize) -> Self {
        let width = match kind {
            BOOL => 0,
            INT8 | UINT8 => 1,
            INT16 | UINT16 => 2,
            INT32 | UINT32 | STRING | BASE64 => 4,
            _ => 8,
        };
        let mut values = Vec::with_capacity(if kind == BOOL { n.div_ceil(8) } else { width * (n + 1) });
        if kind == STRING || kind == BASE64 {
            values.extend_from_slice(&0i32.to_le_bytes());
        }
        let decoded_offsets = if kind == BASE64 { 0i32.to_le_bytes().to_vec() } else { Vec::new() };
        ColumnOut {
            kind,
            len: 0,
            nulls: 0,
            validity: Vec::with_capacity(n.div_ceil(8)),
            values,
            data: Vec::new(),
            decoded_offsets,
            decoded: Vec::new(),
        }
    }

    #[inline]
    fn set_bit(bits: &mut Vec<u8>, i: usize, on: bool) {
        if i % 8 == 0 {
            bits.push(0);
        }
        if on {
            let last = bits.len() - 1;
            bits[last] |= 1 << (i % 8);
        }
    }

    /// Appends a value (None: null), already checked to fit the column's kind.
    #[inline]
    pub(super) fn push(&mut self, cell: Cell, text: &[u8]) -> Result<(), Refusal> {
        let i = self.len;
        self.len += 1;
        let valid = !matches!(cell, Cell::Null);
        Self::set_bit(&mut self.validity, i, valid);
        if !valid {
            self.nulls += 1;
        }
        match (self.kind, cell) {
            (BOOL, Cell::Bool(b)) => Self::set_bit(&mut self.values, i, b),
            (BOOL, _) => Self::set_bit(&mut self.values, i, false),
            (STRING | BASE64, c) => {
                if let Cell::Text(a, b) = c {
                    self.data.extend_from_slice(&text[a..b]);
                    if self.kind == BASE64 {
                        base64::decode(&text[a..b], &mut self.decoded)?;
                    }
                }
                let end = i32::try_from(self.data.len()).map_err(|_| "over 2 GiB of text in a column")?;
                self.values.extend_from_slice(&end.to_le_bytes());
                if self.kind == BASE64 {
                    let end = i32::try_from(self.decoded.len()).map_err(|_| "over 2 GiB in a column")?;
                    self.decoded_offsets.extend_from_slice(&end.to_le_bytes());
                }
            }
            (FLOAT64, c) => {
                let v = if let Cell::Float(v) = c { v } else { 0.0 };
                self.values.extend_from_slice(&v.to_le_bytes());
            }
            (kind, c) => {
                let v: i128 = match c {
                    Cell::Int(v) => i128::from(v),
                    Cell::Uint(v) => i128::from(v),
                    _ => 0,
                };
                // the range was checked when the value was read
                match kind {
                    INT8 => self.values.extend_from_slice(&(v as i8).to_le_bytes()),
                    INT16 => self.values.extend_from_slice(&(v as i16).to_le_bytes()),
                    INT32 => self.values.extend_from_slice(&(v as i32).to_le_bytes()),
                    INT64 => self.values.extend_from_slice(&(v as i64).to_le_bytes()),
                    UINT8 => self.values.extend_from_slice(&(v as u8).to_le_bytes()),
                    UINT16 => self.values.extend_from_slice(&(v as u16).to_le_bytes()),
                    UINT32 => self.values.extend_from_slice(&(v as u32).to_le_bytes()),
                    _ => self.values.extend_from_slice(&(v as u64).to_le_bytes()),
                }
            }
        }
        Ok(())
    }
}

pub(super) fn reserve(data: &mut Vec<u8>, first: usize, n: usize) {
    data.reserve((first + first / 8) * n);
}
