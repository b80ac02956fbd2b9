//! Headwater's compiled hot path: a row image (a Python tuple) to the JSON object bytes that
//! `orjson.dumps(row_encoder(columns)(row))` gives, byte for byte, without building the dict.
//!
//! Only the common values are encoded here (null, bool, 64-bit ints, valid str, bytes as base64,
//! naive or UTC datetimes); anything else (floats, decimals, dates, times, text with surrogate
//! escapes, out-of-range ints, subclasses) goes to the column's Python fallback, which returns the
//! value's JSON bytes as the pure-Python encoder makes them. So the output cannot differ from the
//! Python path on a value this file does not understand: it is never guessed at here.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::PyType;
use pyo3::types::{
    timezone_utc, PyBool, PyBytes, PyDateAccess, PyDateTime, PyInt, PyString, PyTimeAccess,
    PyTuple, PyTzInfoAccess,
};

/// Value kinds, as `cdc.stream.native_rows` numbers them.
const AUTO: u8 = 0; // None, bool, int, str natively; anything else to the fallback
const BINARY: u8 = 1; // bytes as padded standard base64
const DATETIME: u8 = 2; // naive datetime, wall clock, no zone
const DATETIME_UTC: u8 = 3; // datetime in UTC, "Z" suffix
#[allow(dead_code)] // handled by the default arm of write_value
const OTHER: u8 = 4; // None natively, everything else to the fallback
const DECIMAL: u8 = 5; // decimal.Decimal in plain notation, as a string

mod batch;
mod consume_direct;
mod consume_runs;
mod copy_binary;
mod envelope_columns;
mod event_loop;
mod events;
mod image_columns;
mod packed_values;
mod produce_direct;
mod produce_slots;
mod rdkafka_abi;
mod rows;
mod snapshot_text;
mod txn_runs;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// How one table version's row images become JSON objects; built once per schema version.
#[pyclass(frozen, module = "headwater_native")]
pub(crate) struct RowPlan {
    heads: Vec<Vec<u8>>,
    kinds: Vec<u8>,
    fsps: Vec<u8>,
    fallbacks: Vec<PyObject>,
}

#[pymethods]
impl RowPlan {
    #[new]
    fn new(
        heads: Vec<Vec<u8>>,
        kinds: Vec<u8>,
        fsps: Vec<u8>,
        fallbacks: Vec<PyObject>,
    ) -> PyResult<Self> {
        let n = heads.len();
        if kinds.len() != n || fsps.len() != n || fallbacks.len() != n {
            return Err(PyValueError::new_err(
                "RowPlan: heads, kinds, fsps and fallbacks must have one entry per column",
            ));
        }
        if let Some(k) = kinds.iter().find(|k| **k > DECIMAL) {
            return Err(PyValueError::new_err(format!(
                "RowPlan: unknown value kind {k}"
            )));
        }
        if let Some(f) = fsps.iter().find(|f| **f > 6) {
            return Err(PyValueError::new_err(format!(
                "RowPlan: fraction digits {f} over 6"
            )));
        }
        Ok(RowPlan {
            heads,
            kinds,
            fsps,
            fallbacks,
        })
    }

    /// The row's JSON object as bytes (`{"col":value,...}`).
    fn encode<'py>(
        &self,
        py: Python<'py>,
        row: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut out: Vec<u8> = Vec::with_capacity(256);
        self.write(py, row, &mut out)?;
        Ok(PyBytes::new(py, &out))
    }

    /// A whole change envelope: ``head before middle after tail``, where a missing
    /// image is ``null``; one allocation instead of a Python join of encoded parts.
    #[pyo3(signature = (before, after, head, middle, tail))]
    fn envelope<'py>(
        &self,
        py: Python<'py>,
        before: Option<&Bound<'py, PyTuple>>,
        after: Option<&Bound<'py, PyTuple>>,
        head: &[u8],
        middle: &[u8],
        tail: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut out: Vec<u8> = Vec::with_capacity(512 + tail.len());
        out.extend_from_slice(head);
        match before {
            None => out.extend_from_slice(b"null"),
            Some(row) => self.write(py, row, &mut out)?,
        }
        out.extend_from_slice(middle);
        match after {
            None => out.extend_from_slice(b"null"),
            Some(row) => self.write(py, row, &mut out)?,
        }
        out.extend_from_slice(tail);
        Ok(PyBytes::new(py, &out))
    }

    /// A change envelope after a transaction's first row: ``{"before":..,"after":..,"source":``
    /// + ``source_head`` (the source block up to ``"row":``) + the row index + ``,"position":"``
    /// + ``position_head`` + the row index in 10 digits + ``position_tail`` + ``"},"op":"<op>",
    /// "ts_ms":<ts_ms>,"transaction":null}`` (what envelope.py spliced in Python before).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (before, after, source_head, row, position_head, position_tail, op, ts_ms))]
    fn change<'py>(
        &self,
        py: Python<'py>,
        before: Option<&Bound<'py, PyTuple>>,
        after: Option<&Bound<'py, PyTuple>>,
        source_head: &[u8],
        row: u64,
        position_head: &[u8],
        position_tail: &[u8],
        op: &[u8],
        ts_ms: i64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut out: Vec<u8> = Vec::with_capacity(512 + source_head.len());
        out.extend_from_slice(b"{\"before\":");
        self.write_image(py, before, &mut out)?;
        out.extend_from_slice(b",\"after\":");
        self.write_image(py, after, &mut out)?;
        out.extend_from_slice(b",\"source\":");
        out.extend_from_slice(source_head);
        out.extend_from_slice(row.to_string().as_bytes());
        out.extend_from_slice(b",\"position\":\"");
        out.extend_from_slice(position_head);
        if row > 9_999_999_999 {
            return Err(PyValueError::new_err(format!(
                "row index {row} over 10 digits"
            )));
        }
        let digits = row.to_string();
        out.resize(out.len() + 10 - digits.len(), b'0');
        out.extend_from_slice(digits.as_bytes());
        out.extend_from_slice(position_tail);
        out.extend_from_slice(b"\"},\"op\":\"");
        out.extend_from_slice(op);
        out.extend_from_slice(b"\",\"ts_ms\":");
        out.extend_from_slice(ts_ms.to_string().as_bytes());
        out.extend_from_slice(b",\"transaction\":null}");
        Ok(PyBytes::new(py, &out))
    }
}

static DECIMAL_TYPE: GILOnceCell<Py<PyType>> = GILOnceCell::new();

pub(crate) fn decimal_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    DECIMAL_TYPE.import(py, "decimal", "Decimal")
}

impl RowPlan {
    pub(crate) fn write_image(
        &self,
        py: Python<'_>,
        image: Option<&Bound<'_, PyTuple>>,
        out: &mut Vec<u8>,
    ) -> PyResult<()> {
        match image {
            None => {
                out.extend_from_slice(b"null");
                Ok(())
            }
            Some(row) => self.write(py, row, out),
        }
    }

    pub(crate) fn write(&self, py: Python<'_>, row: &Bound<'_, PyTuple>, out: &mut Vec<u8>) -> PyResult<()> {
        let n = self.heads.len();
        if row.len() != n {
            // what zip(strict=True) says on the Python path
            return Err(PyValueError::new_err(format!(
                "row image has {} values for {} columns",
                row.len(),
                n
            )));
        }
        if n == 0 {
            out.extend_from_slice(b"{}");
            return Ok(());
        }
        for (i, value) in row.iter().enumerate() {
            out.extend_from_slice(&self.heads[i]);
            if !self.write_value(py, i, &value, out)? {
                let encoded = self.fallbacks[i].call1(py, (value,))?;
                let bytes = encoded
                    .downcast_bound::<PyBytes>(py)
                    .map_err(|_| PyTypeError::new_err("RowPlan: a fallback must return bytes"))?;
                out.extend_from_slice(bytes.as_bytes());
            }
        }
        out.push(b'}');
        Ok(())
    }

    /// Writes the value natively and returns true, or returns false (nothing written) for the fallback.
    fn write_value(
        &self,
        py: Python<'_>,
        i: usize,
        value: &Bound<'_, PyAny>,
        out: &mut Vec<u8>,
    ) -> PyResult<bool> {
        if value.is_none() {
            out.extend_from_slice(b"null");
            return Ok(true);
        }
        match self.kinds[i] {
            AUTO => {
                if value.is_exact_instance_of::<PyString>() {
                    let s = value.downcast::<PyString>()?;
                    // text with surrogate escapes (invalid in its charset) cannot be UTF-8: the
                    // fallback replaces them as the Python path does
                    return Ok(match s.to_str() {
                        Ok(text) => {
                            write_str(text, out);
                            true
                        }
                        Err(_) => false,
                    });
                }
                if value.is_exact_instance_of::<PyInt>() {
                    if let Ok(v) = value.extract::<i64>() {
                        if v < 0 {
                            out.push(b'-');
                        }
                        push_u64(out, v.unsigned_abs());
                        return Ok(true);
                    }
                    if let Ok(v) = value.extract::<u64>() {
                        push_u64(out, v);
                        return Ok(true);
                    }
                    return Ok(false);
                }
                if value.is_exact_instance_of::<PyBool>() {
                    let b = value.downcast::<PyBool>()?.is_true();
                    out.extend_from_slice(if b { b"true" } else { b"false" });
                    return Ok(true);
                }
                Ok(false)
            }
            BINARY => {
                if value.is_exact_instance_of::<PyBytes>() {
                    write_base64(value.downcast::<PyBytes>()?.as_bytes(), out);
                    return Ok(true);
                }
                Ok(false)
            }
            DATETIME | DATETIME_UTC => {
                if !value.is_exact_instance_of::<PyDateTime>() {
                    return Ok(false);
                }
                let dt = value.downcast::<PyDateTime>()?;
                let utc = self.kinds[i] == DATETIME_UTC;
                if let Some(tz) = dt.get_tzinfo() {
                    // naive or already UTC: the digits are the wall-clock ones; any other zone is
                    // converted by the fallback
                    if !utc || !tz.is(&timezone_utc(py)) {
                        return Ok(false);
                    }
                }
                write_datetime(dt, self.fsps[i], utc, out);
                Ok(true)
            }
            DECIMAL => {
                if !value.get_type().is(decimal_type(py)?) {
                    return Ok(false);
                }
                // str() of a Decimal is format(value, "f") unless it chose an exponent (or is a
                // NaN/Infinity): then the fallback formats it
                let text = value.str()?;
                let text = text.to_str()?;
                if !text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.')
                {
                    return Ok(false);
                }
                out.push(b'"');
                out.extend_from_slice(text.as_bytes());
                out.push(b'"');
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

fn write_str(text: &str, out: &mut Vec<u8>) {
    // orjson's escapes: the two-character forms for \b \t \n \f \r \" \\, \u00XX (lowercase) for
    // the other control characters; everything else, DEL and U+2028 included, as UTF-8
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // eight bytes at a time while none needs an escape (no byte < 0x20, '"' or '\\': each test
        // is exact as a yes/no for the word), then byte by byte through the word that has one
        if let Some(word) = bytes.get(i..i + 8) {
            let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
            let quote = (x ^ (ONES * 0x22)).wrapping_sub(ONES) & !(x ^ (ONES * 0x22)) & HIGHS;
            let slash = (x ^ (ONES * 0x5C)).wrapping_sub(ONES) & !(x ^ (ONES * 0x5C)) & HIGHS;
            if control | quote | slash == 0 {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        i += 1;
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        let i = i - 1;
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            _ => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_base64(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len() / 3 * 4 + 6);
    out.push(b'"');
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out.extend_from_slice(&[
            B64[(n >> 18) as usize & 63],
            B64[(n >> 12) as usize & 63],
            B64[(n >> 6) as usize & 63],
            B64[n as usize & 63],
        ]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[
                B64[(n >> 18) as usize & 63],
                B64[(n >> 12) as usize & 63],
                b'=',
                b'=',
            ]);
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.extend_from_slice(&[
                B64[(n >> 18) as usize & 63],
                B64[(n >> 12) as usize & 63],
                B64[(n >> 6) as usize & 63],
                b'=',
            ]);
        }
        _ => {}
    }
    out.push(b'"');
}

/// `value`'s decimal digits, as `value.to_string()` writes them, without a String per value (a
/// heap allocation and free per integer column of every row: ~5% of the envelope's time).
fn push_u64(out: &mut Vec<u8>, value: u64) {
    let mut buf = [0u8; 20];
    let mut v = value;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_digits(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut v = value;
    let mut i = buf.len();
    while v > 0 || i == buf.len() {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let digits = buf.len() - i;
    for _ in digits..width {
        out.push(b'0');
    }
    out.extend_from_slice(&buf[i..]);
}

fn write_datetime(dt: &Bound<'_, PyDateTime>, fsp: u8, utc: bool, out: &mut Vec<u8>) {
    // datetime.isoformat(timespec="microseconds") cut to the column's fsp digits, unless the value
    // has more precision than that (then all six: never drop digits), as json_values does
    out.push(b'"');
    push_digits(out, dt.get_year() as u32, 4);
    out.push(b'-');
    push_digits(out, u32::from(dt.get_month()), 2);
    out.push(b'-');
    push_digits(out, u32::from(dt.get_day()), 2);
    out.push(b'T');
    push_digits(out, u32::from(dt.get_hour()), 2);
    out.push(b':');
    push_digits(out, u32::from(dt.get_minute()), 2);
    out.push(b':');
    push_digits(out, u32::from(dt.get_second()), 2);
    let micros = dt.get_microsecond();
    let unit = 10u32.pow(6 - u32::from(fsp));
    if micros % unit != 0 {
        out.push(b'.');
        push_digits(out, micros, 6);
    } else if fsp > 0 {
        out.push(b'.');
        push_digits(out, micros / unit, fsp as usize);
    }
    if utc {
        out.push(b'Z');
    }
    out.push(b'"');
}

#[pymodule]
fn headwater_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RowPlan>()?;
    m.add_class::<rows::RowsPlan>()?;
    m.add_class::<events::EventMaker>()?;
    m.add_class::<event_loop::EventLoop>()?;
    m.add_function(wrap_pyfunction!(event_loop::split_packets, m)?)?;
    m.add_class::<batch::MessageMaker>()?;
    m.add_class::<produce_direct::PackedMessages>()?;
    m.add_class::<produce_direct::RawProducer>()?;
    m.add_class::<envelope_columns::EnvelopePlan>()?;
    m.add_function(wrap_pyfunction!(snapshot_text::text_columns, m)?)?;
    m.add_function(wrap_pyfunction!(snapshot_text::bytea_hex, m)?)?;
    m.add_function(wrap_pyfunction!(consume_runs::message_runs, m)?)?;
    m.add_function(wrap_pyfunction!(image_columns::image_columns, m)?)?;
    m.add_function(wrap_pyfunction!(image_columns::position_texts, m)?)?;
    m.add_function(wrap_pyfunction!(copy_binary::copy_binary_rows, m)?)?;
    m.add_class::<consume_direct::RawConsumer>()?;
    m.add_class::<packed_values::PackedValues>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
