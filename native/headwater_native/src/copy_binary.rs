//! PostgreSQL's binary COPY rows from Arrow column buffers (`sinks/sql/pg_binary_copy.py`), in one
//! pass with the GIL released.
//!
//! The Arrow path there builds each column's fields with a dozen pyarrow kernels and joins them
//! with `binary_join_element_wise`: ~30 calls per column, each of which releases and takes the GIL
//! again. On the embedded apply thread every take waited for the capture and column threads (same
//! core), so the COPY's client side cost several times its CPU in wall time. Here the caller hands
//! each column's buffers (`pa.Array.buffers()`, read in place) and gets the rows' bytes: exactly
//! the bytes the Arrow path yields between the header and the trailer (the module's tests compare
//! both on every kind, nulls and offsets included).
//!
//! Column codes (pg_binary_copy._CODES): the value's encoding as PostgreSQL's `*_recv` reads it.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

const BOOL: u8 = 1;
const INT8: u8 = 2; // as int2
const UINT8: u8 = 3; // as int2
const INT16: u8 = 4;
const INT32: u8 = 5;
const UINT16: u8 = 6; // as int4
const INT64: u8 = 7;
const UINT32: u8 = 8; // as int8
const DATE32: u8 = 9; // days since 2000-01-01
const TIMESTAMP: u8 = 10; // microseconds since 2000-01-01
const BYTES: u8 = 11; // text or bytea, int32 offsets
const UINT64: u8 = 12; // numeric
const DECIMAL: u8 = 13; // decimal128 up to 18 digits: numeric

const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_US: i64 = PG_EPOCH_DAYS as i64 * 86_400 * 1_000_000;
const NULL_FIELD: [u8; 4] = [0xff; 4];
const NUMERIC_NEG: u16 = 0x4000;

/// One column's buffers, borrowed from the caller's arrays for the call.
struct Column<'a> {
    code: u8,
    offset: usize,
    validity: Option<&'a [u8]>,
    values: &'a [u8],
    data: &'a [u8],
    precision: u32,
    scale: u32,
    // numeric: base-10000 digit groups of every field, weight (from the largest value)
    groups: u32,
    weight: i16,
}

fn slice(buffer: &PyBuffer<i8>) -> &[u8] {
    // a pyarrow Buffer (format "b"): contiguous bytes, alive while the caller holds its array
    unsafe { std::slice::from_raw_parts(buffer.buf_ptr() as *const u8, buffer.len_bytes()) }
}

fn width(code: u8) -> usize {
    match code {
        BOOL => 0,
        INT8 | UINT8 => 1,
        INT16 | UINT16 => 2,
        INT32 | UINT32 | DATE32 | BYTES => 4,
        DECIMAL => 16,
        _ => 8,
    }
}

fn decimal_digits(mut v: u64) -> u32 {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

impl Column<'_> {
    fn valid(&self, i: usize) -> bool {
        match self.validity {
            None => true,
            Some(bits) => {
                let at = self.offset + i;
                bits[at / 8] >> (at % 8) & 1 == 1
            }
        }
    }

    fn raw(&self, i: usize, w: usize) -> &[u8] {
        let at = (self.offset + i) * w;
        &self.values[at..at + w]
    }

    fn int(&self, i: usize) -> i64 {
        let w = width(self.code);
        let b = self.raw(i, w);
        match self.code {
            INT8 => b[0] as i8 as i64,
            UINT8 => b[0] as i64,
            INT16 => i16::from_le_bytes([b[0], b[1]]) as i64,
            UINT16 => u16::from_le_bytes([b[0], b[1]]) as i64,
            INT32 | DATE32 => i32::from_le_bytes(b.try_into().unwrap()) as i64,
            UINT32 => u32::from_le_bytes(b.try_into().unwrap()) as i64,
            _ => i64::from_le_bytes(b[..8].try_into().unwrap()),
        }
    }

    /// A numeric's magnitude and sign (UINT64, or a decimal's unscaled low 64 bits).
    fn magnitude(&self, i: usize) -> (u64, bool) {
        if self.code == UINT64 {
            let b = self.raw(i, 8);
            (u64::from_le_bytes(b.try_into().unwrap()), false)
        } else {
            let b = self.raw(i, 16);
            let unscaled = i64::from_le_bytes(b[..8].try_into().unwrap());
            (unscaled.unsigned_abs(), unscaled < 0)
        }
    }

    /// The digit groups every field of the column gets (pg_binary_copy._numeric's count).
    fn size_numeric(&mut self, n: usize) {
        let pad = (4 - self.scale % 4) % 4;
        let fraction = (self.scale + pad) / 4;
        let mut largest = 0u64;
        for i in 0..n {
            if self.valid(i) {
                largest = largest.max(self.magnitude(i).0);
            }
        }
        let needed = (decimal_digits(largest) + pad).div_ceil(4);
        let cap = (self.precision + pad).div_ceil(4);
        self.groups = needed.max(1).min(cap);
        self.weight = self.groups as i16 - fraction as i16 - 1;
    }

    fn field(&self, i: usize, out: &mut Vec<u8>) {
        if !self.valid(i) {
            out.extend_from_slice(&NULL_FIELD);
            return;
        }
        match self.code {
            BOOL => {
                let at = self.offset + i;
                out.extend_from_slice(&1u32.to_be_bytes());
                out.push(self.values[at / 8] >> (at % 8) & 1);
            }
            INT8 | UINT8 | INT16 => {
                out.extend_from_slice(&2u32.to_be_bytes());
                out.extend_from_slice(&(self.int(i) as i16).to_be_bytes());
            }
            INT32 | UINT16 => {
                out.extend_from_slice(&4u32.to_be_bytes());
                out.extend_from_slice(&(self.int(i) as i32).to_be_bytes());
            }
            INT64 | UINT32 => {
                out.extend_from_slice(&8u32.to_be_bytes());
                out.extend_from_slice(&self.int(i).to_be_bytes());
            }
            DATE32 => {
                out.extend_from_slice(&4u32.to_be_bytes());
                let days = (self.int(i) as i32).wrapping_sub(PG_EPOCH_DAYS);
                out.extend_from_slice(&days.to_be_bytes());
            }
            TIMESTAMP => {
                out.extend_from_slice(&8u32.to_be_bytes());
                out.extend_from_slice(&self.int(i).wrapping_sub(PG_EPOCH_US).to_be_bytes());
            }
            BYTES => {
                let o = self.raw(i, 4);
                let start = i32::from_le_bytes(o.try_into().unwrap()) as usize;
                let o = self.raw(i + 1, 4);
                let end = i32::from_le_bytes(o.try_into().unwrap()) as usize;
                out.extend_from_slice(&((end - start) as u32).to_be_bytes());
                out.extend_from_slice(&self.data[start..end]);
            }
            _ => self.numeric(i, out),
        }
    }

    fn numeric(&self, i: usize, out: &mut Vec<u8>) {
        let (magnitude, negative) = self.magnitude(i);
        let pad = (4 - self.scale % 4) % 4;
        let groups = self.groups as usize;
        out.extend_from_slice(&(8 + 2 * groups as u32).to_be_bytes());
        out.extend_from_slice(&(groups as i16).to_be_bytes());
        out.extend_from_slice(&self.weight.to_be_bytes());
        out.extend_from_slice(&(if negative { NUMERIC_NEG } else { 0 }).to_be_bytes());
        out.extend_from_slice(&(self.scale as i16).to_be_bytes());
        // digit 0 (the lowest) holds the lowest 4 - pad decimal digits, shifted up by pad
        let below = 10u64.pow(4 - pad);
        let mut digits = [0u16; 5];
        digits[0] = ((magnitude % below) * 10u64.pow(pad)) as u16;
        let mut rest = magnitude / below;
        for d in digits.iter_mut().take(groups).skip(1) {
            *d = (rest % 10_000) as u16;
            rest /= 10_000;
        }
        for d in digits[..groups].iter().rev() {
            out.extend_from_slice(&d.to_be_bytes());
        }
    }
}

/// Rows `0..n` of `columns` in PostgreSQL's binary COPY format (each row: the field count, then
/// its fields), without the header and trailer. Each column is `(code, offset, validity or None,
/// values, data or None, precision, scale)`: an Arrow array's offset and buffers (values: the
/// fixed-width values, the LSB bitmap for bool, the int32 offsets for text and binary), of the
/// array sliced to the rows. Raises ValueError on a code it does not know or buffers too short.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn copy_binary_rows<'py>(
    py: Python<'py>,
    columns: Vec<(
        u8,
        usize,
        Option<PyBuffer<i8>>,
        PyBuffer<i8>,
        Option<PyBuffer<i8>>,
        u32,
        u32,
    )>,
    n: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut cols = Vec::with_capacity(columns.len());
    for (code, offset, validity, values, data, precision, scale) in &columns {
        let (code, offset) = (*code, *offset);
        if !(BOOL..=DECIMAL).contains(&code) || (code == DECIMAL && *precision > 18) {
            return Err(PyValueError::new_err(format!(
                "column code {code} cannot be encoded"
            )));
        }
        let values = slice(values);
        let validity = validity.as_ref().map(slice);
        let data = data.as_ref().map(slice).unwrap_or(&[]);
        let needed = match code {
            BOOL => (offset + n).div_ceil(8),
            BYTES => (offset + n + 1) * 4,
            _ => (offset + n) * width(code),
        };
        let bits_short = validity.is_some_and(|v| v.len() < (offset + n).div_ceil(8));
        if values.len() < needed || bits_short {
            return Err(PyValueError::new_err(
                "an array's buffer is shorter than its rows",
            ));
        }
        if code == BYTES {
            // every row's offsets in order and inside the data: the encoder then cannot panic
            let at = |i: usize| i32::from_le_bytes(values[i * 4..i * 4 + 4].try_into().unwrap());
            let mut last = at(offset);
            let mut ordered = last >= 0;
            for i in offset + 1..=offset + n {
                let next = at(i);
                ordered &= next >= last;
                last = next;
            }
            if !ordered || last as usize > data.len() {
                return Err(PyValueError::new_err(
                    "a text column's offsets are out of order or outside its data",
                ));
            }
        }
        cols.push(Column {
            code,
            offset,
            validity,
            values,
            data,
            precision: *precision,
            scale: *scale,
            groups: 0,
            weight: 0,
        });
    }
    let out = py.allow_threads(|| {
        let count = (cols.len() as u16).to_be_bytes();
        let mut size = n * 2;
        for c in cols.iter_mut() {
            if c.code == UINT64 || c.code == DECIMAL {
                c.size_numeric(n);
                size += n * (12 + 2 * c.groups as usize);
            } else if c.code == BYTES {
                size += n * 4 + c.data.len();
            } else {
                size += n * (4 + width(c.code).max(1) * 2);
            }
        }
        let mut out = Vec::with_capacity(size);
        for i in 0..n {
            out.extend_from_slice(&count);
            for c in &cols {
                c.field(i, &mut out);
            }
        }
        out
    });
    Ok(PyBytes::new(py, &out))
}
