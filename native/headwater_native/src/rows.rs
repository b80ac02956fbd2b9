//! Binlog row images (the bytes of a WRITE/UPDATE/DELETE_ROWS event) to Python tuples, one plan per
//! TABLE_MAP: what `cdc.sources.mariadb.row_decoder` generates as Python source, as a loop here.
//!
//! Integers, floats, YEAR, BIT, valid UTF-8 text and binary strings are made here; every other value
//! (dates, times, decimals, other character sets, text that is not valid UTF-8) is cut out of the
//! row here and handed to the column's Python helper, the same function the generated Python calls.
//! So a value this file does not understand is never guessed at. The plan is built by
//! `cdc/sources/mariadb/native_rows.py`; the Python decoder stays as the reference it is tested
//! against (tests/unit/test_speedcap_native_rows.py).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDateTime, PyFloat, PyList, PyString, PyTuple};

/// Column kinds, as `cdc.sources.mariadb.native_rows` numbers them. `size` is the fixed width or
/// the length prefix's width; `extra` is kind-specific (below).
const INT_U: u8 = 0; // little-endian unsigned, size 1, 2, 3, 4 or 8
const INT_S: u8 = 1; // little-endian two's complement, size 1, 2, 3, 4 or 8
const F32: u8 = 2;
const F64: u8 = 3;
const YEAR: u8 = 4; // 1 byte: 1900 + v, 0 stays 0
const BIT: u8 = 5; // big-endian unsigned, size 1..8
const TEXT_UTF8: u8 = 6; // length-prefixed, str; not valid UTF-8 -> helper(bytes); extra = bytes skipped after the prefix
const TEXT_HELPER: u8 = 7; // length-prefixed, helper(bytes)
const BYTES: u8 = 8; // length-prefixed, bytes; extra = bytes skipped after the prefix (GEOMETRY's SRID)
const BINARY: u8 = 9; // length-prefixed, bytes zero-padded to extra; then helper(bytes) if there is one
const FIXED_HELPER: u8 = 10; // helper(the size bytes)
const INT_HELPER: u8 = 11; // helper(little-endian unsigned int of size bytes)
const REVERSED_HELPER: u8 = 12; // helper(the size bytes reversed)
const ENUM: u8 = 13; // little-endian index of size bytes into the helper (a tuple): "" past its end
const DATETIME2: u8 = 14; // 5 bytes + the fraction's (size - 5); extra = the fraction's scale to
                          // microseconds; not a valid datetime (zero dates) -> helper(the bytes)
// length-prefixed latin1 (MariaDB's, cp1252-like): ASCII text is the same in every Latin-1
// variant, so it becomes a str here; anything else goes to helper(bytes)
const TEXT_LATIN1: u8 = 15;
// MariaDB's binary DECIMAL of size bytes; extra = precision << 8 | scale (precision up to 38): a
// decimal.Decimal made from its digits' text; helper(the bytes) when they do not fit 128 bits
const DECIMAL_BIN: u8 = 16;
const LAST_KIND: u8 = DECIMAL_BIN;

struct Col {
    kind: u8,
    size: usize,
    extra: usize,
    nullable: bool,
    helper: Option<PyObject>,
}

/// How one table shape's row images are read; built once per TABLE_MAP.
#[pyclass(frozen, module = "headwater_native")]
pub struct RowsPlan {
    cols: Vec<Col>,
}

fn truncated() -> PyErr {
    PyValueError::new_err("row image ends inside a value (truncated rows event)")
}

fn take<'a>(d: &'a [u8], p: &mut usize, n: usize) -> PyResult<&'a [u8]> {
    let end = p.checked_add(n).ok_or_else(truncated)?;
    let out = d.get(*p..end).ok_or_else(truncated)?;
    *p = end;
    Ok(out)
}

fn le(b: &[u8]) -> u64 {
    b.iter()
        .rev()
        .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

/// The text of a binary DECIMAL (value_codecs.make_decimal's arithmetic: base-10^9 groups,
/// big-endian, the sign in the top bit, negatives inverted), or None when it does not fit u128.
fn decimal_text(raw: &[u8], extra: usize) -> Option<String> {
    const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
    let (precision, scale) = (extra >> 8, extra & 0xFF);
    let intg = precision.checked_sub(scale)?;
    let mut b = raw.to_vec();
    let first = b.first_mut()?;
    let negative = *first & 0x80 == 0;
    *first ^= 0x80;
    if negative {
        b.iter_mut().for_each(|x| *x ^= 0xFF);
    }
    let mut pos = 0usize;
    let mut ip: u128 = 0;
    let mut add = |width: usize, factor: u128| -> Option<()> {
        let group = u128::from(be(b.get(pos..pos + width)?));
        pos += width;
        ip = ip.checked_mul(factor)?.checked_add(group)?;
        Some(())
    };
    if DIG2BYTES[intg % 9] > 0 {
        add(DIG2BYTES[intg % 9], 1_000_000_000)?;
    }
    for _ in 0..intg / 9 {
        add(4, 1_000_000_000)?;
    }
    for _ in 0..scale / 9 {
        add(4, 1_000_000_000)?;
    }
    if DIG2BYTES[scale % 9] > 0 {
        add(DIG2BYTES[scale % 9], 10u128.pow((scale % 9) as u32))?;
    }
    if pos != b.len() {
        return None;
    }
    let digits = ip.to_string();
    let mut text = String::with_capacity(digits.len() + scale + 3);
    if negative && ip != 0 {
        text.push('-'); // Decimal(-0) is Decimal(0): no sign, as the Python decoder gives
    }
    if scale == 0 {
        text.push_str(&digits);
    } else if digits.len() > scale {
        let cut = digits.len() - scale;
        text.push_str(&digits[..cut]);
        text.push('.');
        text.push_str(&digits[cut..]);
    } else {
        text.push_str("0.");
        text.extend(std::iter::repeat('0').take(scale - digits.len()));
        text.push_str(&digits);
    }
    Some(text)
}

#[pymethods]
impl RowsPlan {
    /// One entry per column: (kind, size, extra, nullable, helper or None).
    #[new]
    fn new(columns: Vec<(u8, usize, usize, bool, Option<PyObject>)>) -> PyResult<Self> {
        let mut cols = Vec::with_capacity(columns.len());
        for (i, (kind, size, extra, nullable, helper)) in columns.into_iter().enumerate() {
            let bad = |what: &str| PyValueError::new_err(format!("RowsPlan: column {i}: {what}"));
            if kind > LAST_KIND {
                return Err(bad(&format!("unknown kind {kind}")));
            }
            let fixed_int = matches!(kind, INT_U | INT_S) && matches!(size, 1 | 2 | 3 | 4 | 8);
            let ok_size = match kind {
                INT_U | INT_S => fixed_int,
                F32 => size == 4,
                F64 => size == 8,
                YEAR => size == 1,
                BIT | INT_HELPER | ENUM => (1..=8).contains(&size),
                DATETIME2 => (5..=8).contains(&size),
                TEXT_UTF8 | TEXT_HELPER | TEXT_LATIN1 | BYTES | BINARY => (1..=4).contains(&size),
                _ => size <= 64,
            };
            if !ok_size {
                return Err(bad(&format!("size {size} for kind {kind}")));
            }
            let needs_helper = matches!(
                kind,
                TEXT_HELPER | FIXED_HELPER | INT_HELPER | REVERSED_HELPER | ENUM | TEXT_UTF8 | TEXT_LATIN1
                    | DECIMAL_BIN
            );
            if needs_helper && helper.is_none() {
                return Err(bad(&format!("kind {kind} needs a helper")));
            }
            cols.push(Col {
                kind,
                size,
                extra,
                nullable,
                helper,
            });
        }
        Ok(RowsPlan { cols })
    }

    /// Full row images between `pos` and `end` of `data` (write and delete events): a list of tuples.
    pub(crate) fn decode_rows<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        pos: usize,
        end: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let d = data.get(..end).ok_or_else(truncated)?;
        let out = PyList::empty(py);
        let mut p = pos;
        while p < end {
            out.append(self.image(py, d, &mut p)?)?;
        }
        Ok(out)
    }

    /// (before, after) pairs of full images between `pos` and `end` (update events).
    pub(crate) fn decode_updates<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        pos: usize,
        end: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let d = data.get(..end).ok_or_else(truncated)?;
        let out = PyList::empty(py);
        let mut p = pos;
        while p < end {
            let before = self.image(py, d, &mut p)?;
            let after = self.image(py, d, &mut p)?;
            out.append(PyTuple::new(py, [before, after])?)?;
        }
        Ok(out)
    }
}

impl RowsPlan {
    fn image<'py>(
        &self,
        py: Python<'py>,
        d: &[u8],
        p: &mut usize,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let nulls = take(d, p, self.cols.len().div_ceil(8))?;
        let mut values: Vec<Bound<'py, PyAny>> = Vec::with_capacity(self.cols.len());
        for (i, col) in self.cols.iter().enumerate() {
            if col.nullable && (nulls[i / 8] >> (i % 8)) & 1 == 1 {
                values.push(py.None().into_bound(py));
                continue;
            }
            values.push(self.value(py, col, d, p)?);
        }
        let image = PyTuple::new(py, values)?;
        crate::events::untrack_if_atomic(&image);
        Ok(image)
    }

    fn call<'py>(
        py: Python<'py>,
        col: &Col,
        arg: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // every kind that calls a helper was checked to have one in new()
        let helper = col.helper.as_ref().expect("checked in RowsPlan::new");
        helper.bind(py).call1((arg,))
    }

    fn value<'py>(
        &self,
        py: Python<'py>,
        col: &Col,
        d: &[u8],
        p: &mut usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        match col.kind {
            INT_U => {
                let v = le(take(d, p, col.size)?);
                Ok(v.into_pyobject(py)?.into_any())
            }
            INT_S => {
                let raw = le(take(d, p, col.size)?);
                let bits = 8 * col.size as u32;
                let v = if bits == 64 {
                    raw as i64
                } else {
                    ((raw << (64 - bits)) as i64) >> (64 - bits)
                };
                Ok(v.into_pyobject(py)?.into_any())
            }
            F32 => {
                let b = take(d, p, 4)?;
                let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                Ok(PyFloat::new(py, f64::from(v)).into_any())
            }
            F64 => {
                let b = take(d, p, 8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Ok(PyFloat::new(py, f64::from_le_bytes(a)).into_any())
            }
            YEAR => {
                let v = u64::from(take(d, p, 1)?[0]);
                let year = if v == 0 { 0 } else { v + 1900 };
                Ok(year.into_pyobject(py)?.into_any())
            }
            BIT => Ok(be(take(d, p, col.size)?).into_pyobject(py)?.into_any()),
            TEXT_UTF8 | TEXT_HELPER | TEXT_LATIN1 | BYTES | BINARY => {
                let n = le(take(d, p, col.size)?) as usize;
                let raw = take(d, p, n)?;
                // only GEOMETRY skips bytes after the prefix (its SRID); BINARY's extra is its width
                let skip = if col.kind == BYTES {
                    col.extra.min(raw.len())
                } else {
                    0
                };
                let raw = &raw[skip..];
                match col.kind {
                    TEXT_UTF8 => match std::str::from_utf8(raw) {
                        Ok(text) => Ok(PyString::new(py, text).into_any()),
                        Err(_) => Self::call(py, col, PyBytes::new(py, raw).into_any()),
                    },
                    TEXT_HELPER => Self::call(py, col, PyBytes::new(py, raw).into_any()),
                    TEXT_LATIN1 if raw.is_ascii() => match std::str::from_utf8(raw) {
                        Ok(text) => Ok(PyString::new(py, text).into_any()),
                        Err(_) => Self::call(py, col, PyBytes::new(py, raw).into_any()),
                    },
                    TEXT_LATIN1 => Self::call(py, col, PyBytes::new(py, raw).into_any()),
                    BYTES => Ok(PyBytes::new(py, raw).into_any()),
                    _ => {
                        // BINARY(n) values are logged without their trailing zero bytes
                        let mut padded = raw.to_vec();
                        if padded.len() < col.extra {
                            padded.resize(col.extra, 0);
                        }
                        let value = PyBytes::new(py, &padded);
                        match &col.helper {
                            None => Ok(value.into_any()),
                            Some(helper) => helper.bind(py).call1((value,)),
                        }
                    }
                }
            }
            DATETIME2 => {
                let raw = take(d, p, col.size)?;
                // value_codecs.make_datetime2's arithmetic; a negative packed value is a year below
                // 1, which datetime() refuses there too
                let x = be(&raw[..5]) as i64 - 0x80_0000_0000;
                let usec = be(&raw[5..]) * col.extra as u64;
                if x >= 0 && usec <= i32::MAX as u64 {
                    let (ymd, hms) = (x >> 17, x & 0x1FFFF);
                    let ym = ymd >> 5;
                    let (y, mo, day) = (ym / 13, ym % 13, ymd & 31);
                    let (h, mi, s) = (hms >> 12, (hms >> 6) & 63, hms & 63);
                    if y <= i64::from(i32::MAX) {
                        // the C API checks the ranges exactly as datetime() does
                        let made = PyDateTime::new(
                            py,
                            y as i32,
                            mo as u8,
                            day as u8,
                            h as u8,
                            mi as u8,
                            s as u8,
                            usec as u32,
                            None,
                        );
                        if let Ok(value) = made {
                            return Ok(value.into_any());
                        }
                    }
                }
                Self::call(py, col, PyBytes::new(py, raw).into_any())
            }
            FIXED_HELPER => Self::call(py, col, PyBytes::new(py, take(d, p, col.size)?).into_any()),
            DECIMAL_BIN => {
                let raw = take(d, p, col.size)?;
                match decimal_text(raw, col.extra) {
                    Some(text) => crate::decimal_type(py)?.call1((text,)),
                    None => Self::call(py, col, PyBytes::new(py, raw).into_any()),
                }
            }
            INT_HELPER => {
                let v = le(take(d, p, col.size)?).into_pyobject(py)?.into_any();
                Self::call(py, col, v)
            }
            REVERSED_HELPER => {
                let mut raw = take(d, p, col.size)?.to_vec();
                raw.reverse();
                Self::call(py, col, PyBytes::new(py, &raw).into_any())
            }
            _ => {
                // ENUM: the helper is the tuple ("", *values)
                let x = le(take(d, p, col.size)?) as usize;
                let table = col
                    .helper
                    .as_ref()
                    .expect("checked in RowsPlan::new")
                    .bind(py);
                if x < table.len()? {
                    table.get_item(x)
                } else {
                    Ok(PyString::new(py, "").into_any())
                }
            }
        }
    }
}
