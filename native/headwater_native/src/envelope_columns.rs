//! A chunk's change envelopes (one table version, as `cdc.stream.envelope` writes them) to plain
//! column buffers, which `cdc.stream.native_columns` wraps as pyarrow arrays (the buffers are
//! copied once into bytes objects, then wrapped without a copy).
//!
//! Why hand-written rather than a library: pyarrow's JSON reader was the bottleneck of `cdc sink`'s
//! column path, 2.7-4.1 of the 3.4-5.0 us of CPU `arrow_changes.change_columns` spent per envelope
//! of the benchmark's tables (550-790 bytes), and Arrow's base64 kernels most of the rest. This
//! parser reads only the fields the columns need, decodes base64 itself, does not parse again the
//! source-block bytes an envelope shares with the one before, and fills the buffers directly:
//! 0.5-1.0 us per envelope, change_columns 0.7-1.2 (4-5x); `cdc sink` from Kafka gets 1.2x
//! (MariaDB) to 2.1x (PostgreSQL) the rows per CPU-second, medians of an interleaved A/B
//! (`benchmarks.sinkdecode_bench`, `benchmarks.speedsink_bench`: benchmarks/results/latest.md,
//! "cdc sink decode").
//!
//! It gives the values pyarrow's reader gives (the raw JSON forms: integers in the column's type,
//! floats as doubles, text unescaped), or it refuses the whole chunk with a reason, and the caller
//! takes the pyarrow path (which may refuse too: then the per-change path). It refuses anything it
//! does not need to accept: a missing or repeated field, a number with a fraction in an integer
//! column, a non-finite double, a lone surrogate escape, bytes that are not UTF-8, any op but
//! c/u/d/r, another table version, an update of a keyless table or one that moves its key, a
//! change without the image it leaves. Fields it does not read are still checked to be valid JSON.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::packed_values::PackedValues;

// Column kinds, as `cdc.stream.native_columns` numbers them.
const BOOL: u8 = 0;
const INT8: u8 = 1;
const INT16: u8 = 2;
const INT32: u8 = 3;
const INT64: u8 = 4;
const UINT8: u8 = 5;
const UINT16: u8 = 6;
const UINT32: u8 = 7;
const UINT64: u8 = 8;
const FLOAT64: u8 = 9;
const STRING: u8 = 10;
const BASE64: u8 = 11; // text, and the bytes it encodes

// its parts, beside it in src/ (scripts/setup.sh rebuilds when a src/*.rs file changes)
#[path = "envelope_base64.rs"]
mod base64;
#[path = "envelope_buffers.rs"]
mod buffers;
#[path = "envelope_json.rs"]
mod json;
#[path = "envelope_source.rs"]
mod source;

use buffers::{reserve, ColumnOut};
use json::{key_is, key_name, Reader};
use source::{read_source, SourceMemo};

type Refusal = &'static str;

/// How one table version's envelopes become columns; built once per schema version.
#[pyclass(frozen, module = "headwater_native")]
pub(crate) struct EnvelopePlan {
    names: Vec<Vec<u8>>,
    kinds: Vec<u8>,
    key: Vec<usize>,
    version: Vec<u8>,
}

#[pymethods]
impl EnvelopePlan {
    #[new]
    fn new(names: Vec<String>, kinds: Vec<u8>, key: Vec<usize>, version: String) -> PyResult<Self> {
        if names.len() != kinds.len() {
            return Err(PyValueError::new_err(
                "EnvelopePlan: names and kinds must have one entry per column",
            ));
        }
        if let Some(k) = kinds.iter().find(|k| **k > BASE64) {
            return Err(PyValueError::new_err(format!("EnvelopePlan: unknown column kind {k}")));
        }
        if let Some(i) = key.iter().find(|i| **i >= names.len()) {
            return Err(PyValueError::new_err(format!("EnvelopePlan: key column {i} out of range")));
        }
        Ok(EnvelopePlan {
            names: names.into_iter().map(String::into_bytes).collect(),
            kinds,
            key,
            version: version.into_bytes(),
        })
    }

    /// The columns of ``values`` (one envelope each), or the reason it refuses them (a str).
    ///
    /// Columns, in order: op, position, ts_ms, gtid, then the image each change leaves (after;
    /// before for a delete) per table column. Each is ``(validity, values, data, decoded_offsets,
    /// decoded)``: validity a bitmap or None when nothing is null; values the fixed-width values
    /// (LSB bitmap for bool, int32 offsets for text); data the text's bytes (None for other kinds);
    /// for base64 text, the offsets and bytes it decodes to (else None).
    /// ``values``: a sequence of bytes, or a ``PackedValues`` (read in place: no object per value).
    fn decode<'py>(&self, py: Python<'py>, values: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        // the parse touches no Python object: another thread (the sink's apply) runs meanwhile
        let decoded = if let Ok(packed) = values.downcast::<PackedValues>() {
            let view = packed.get().view();
            py.allow_threads(|| self.decode_all(&view.slices()))
        } else {
            let values: Vec<PyBackedBytes> = values.extract()?;
            py.allow_threads(|| {
                let slices: Vec<&[u8]> = values.iter().map(|v| -> &[u8] { v }).collect();
                self.decode_all(&slices)
            })
        };
        match decoded {
            Err(reason) => Ok(PyString::new(py, reason).into_any()),
            Ok(columns) => {
                let out = PyList::empty(py);
                for c in columns {
                    let validity = if c.nulls > 0 {
                        PyBytes::new(py, &c.validity).into_any()
                    } else {
                        py.None().into_bound(py)
                    };
                    let none = || py.None().into_bound(py);
                    let bytes = |b: &[u8]| PyBytes::new(py, b).into_any();
                    let text = c.kind == STRING || c.kind == BASE64;
                    let item = PyTuple::new(
                        py,
                        [
                            validity,
                            bytes(&c.values),
                            if text { bytes(&c.data) } else { none() },
                            if c.kind == BASE64 { bytes(&c.decoded_offsets) } else { none() },
                            if c.kind == BASE64 { bytes(&c.decoded) } else { none() },
                        ],
                    )?;
                    out.append(item)?;
                }
                Ok(out.into_any())
            }
        }
    }
}

/// One value of an image while its envelope is read (text as a range of the image's scratch).
#[derive(Clone, Copy, PartialEq)]
enum Cell {
    Missing,
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Text(usize, usize),
}

/// An image of one envelope: one cell per column, its text in ``text``.
struct Image {
    present: bool, // an object, not null
    cells: Vec<Cell>,
    text: Vec<u8>,
}

impl Image {
    fn new(n: usize) -> Self {
        Image { present: false, cells: vec![Cell::Missing; n], text: Vec::with_capacity(256) }
    }

    fn text_of(&self, a: usize, b: usize) -> &[u8] {
        &self.text[a..b]
    }
}

/// One envelope's fields, as read.
struct Envelope {
    op: u8,
    position: Vec<u8>,
    ts_ms: i64,
    gtid: Vec<u8>,
    version: Vec<u8>,
}

impl EnvelopePlan {
    fn decode_all(&self, values: &[&[u8]]) -> Result<Vec<ColumnOut>, Refusal> {
        let n = values.len();
        let mut meta = vec![
            ColumnOut::new(STRING, n),
            ColumnOut::new(STRING, n),
            ColumnOut::new(INT64, n),
            ColumnOut::new(STRING, n),
        ];
        let mut columns: Vec<ColumnOut> = self.kinds.iter().map(|k| ColumnOut::new(*k, n)).collect();
        let mut before = Image::new(self.names.len());
        let mut after = Image::new(self.names.len());
        let mut memo = SourceMemo::default();
        let mut env = Envelope {
            op: 0,
            position: Vec::with_capacity(128),
            ts_ms: 0,
            gtid: Vec::with_capacity(64),
            version: Vec::with_capacity(32),
        };
        for &message in values {
            // once per message, then every string's bytes are known to be UTF-8
            std::str::from_utf8(message).map_err(|_| "a message that is not UTF-8")?;
            self.read_envelope(message, &mut env, &mut before, &mut after, &mut memo)?;
            if env.version != self.version {
                return Err("several table versions");
            }
            let image = if env.op == b'd' { &before } else { &after };
            if !image.present {
                return Err("a change without the image it leaves");
            }
            if env.op == b'u' && !self.keeps_key(&before, &after)? {
                return Err("an update of a keyless table or one that moves its key");
            }
            if meta[0].len == 0 {
                // the first message's sizes times n: no regrowth (copies, page faults) afterwards
                reserve(&mut meta[1].data, env.position.len(), n);
                reserve(&mut meta[3].data, env.gtid.len(), n);
                reserve(&mut meta[0].data, 1, n);
                for (column, cell) in columns.iter_mut().zip(&image.cells) {
                    if let Cell::Text(a, b) = cell {
                        reserve(&mut column.data, b - a, n);
                        if column.kind == BASE64 {
                            reserve(&mut column.decoded, (b - a) / 4 * 3, n);
                        }
                    }
                }
            }
            meta[0].push(Cell::Text(0, 1), std::slice::from_ref(&env.op))?;
            meta[1].push(Cell::Text(0, env.position.len()), &env.position)?;
            meta[2].push(Cell::Int(env.ts_ms), &[])?;
            meta[3].push(Cell::Text(0, env.gtid.len()), &env.gtid)?;
            for (column, cell) in columns.iter_mut().zip(&image.cells) {
                column.push(*cell, &image.text)?;
            }
        }
        meta.extend(columns);
        Ok(meta)
    }

    /// Whether an update's key values are the same before and after (a null on either side, or
    /// no before image, cannot move a key: what the pyarrow path's comparison says too).
    fn keeps_key(&self, before: &Image, after: &Image) -> Result<bool, Refusal> {
        if self.key.is_empty() {
            return Ok(false);
        }
        if !before.present {
            return Ok(true);
        }
        for &k in &self.key {
            let same = match (before.cells[k], after.cells[k]) {
                (Cell::Null, _) | (_, Cell::Null) => true,
                (Cell::Text(a, b), Cell::Text(c, d)) => before.text_of(a, b) == after.text_of(c, d),
                (x, y) => x == y,
            };
            if !same {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn read_envelope<'a>(
        &self,
        message: &'a [u8],
        env: &mut Envelope,
        before: &mut Image,
        after: &mut Image,
        memo: &mut SourceMemo<'a>,
    ) -> Result<(), Refusal> {
        let mut r = Reader { s: message, i: 0 };
        // which top-level fields were seen: before, after, op, source
        let mut seen = [false; 4];
        r.object(|r, key, escaped| {
            let mut unescaped = Vec::new();
            let name = key_name(key, escaped, &mut unescaped)?;
            let field = match name {
                b"before" => 0,
                b"after" => 1,
                b"op" => 2,
                b"source" => 3,
                _ => return r.skip(1),
            };
            if seen[field] {
                return Err("a field given twice");
            }
            seen[field] = true;
            match field {
                0 => self.read_image(r, before),
                1 => self.read_image(r, after),
                2 => {
                    let mut op = Vec::with_capacity(1);
                    r.string_into(&mut op)?;
                    match op.as_slice() {
                        [c @ (b'c' | b'u' | b'd' | b'r')] => {
                            env.op = *c;
                            Ok(())
                        }
                        _ => Err("an op other than c, u, d, r (a truncate?)"),
                    }
                }
                _ => read_source(r, env, memo),
            }
        })?;
        r.ws();
        if r.i != message.len() {
            return Err("more after the envelope's object");
        }
        if seen != [true; 4] {
            return Err("an envelope without before, after, op or source");
        }
        Ok(())
    }

    fn read_image(&self, r: &mut Reader<'_>, image: &mut Image) -> Result<(), Refusal> {
        image.text.clear();
        image.cells.fill(Cell::Missing);
        image.present = false;
        if r.null()? {
            return Ok(());
        }
        image.present = true;
        let mut next = 0; // the column expected next: the encoder writes them in order
        r.object(|r, key, escaped| {
            let index = if next < self.names.len() && key_is(key, escaped, &self.names[next])? {
                Some(next)
            } else {
                let mut found = None;
                for (i, name) in self.names.iter().enumerate() {
                    if key_is(key, escaped, name)? {
                        found = Some(i);
                        break;
                    }
                }
                found
            };
            let Some(i) = index else {
                return r.skip(1); // a column this table version does not have
            };
            if image.cells[i] != Cell::Missing {
                return Err("a column given twice");
            }
            next = i + 1;
            image.cells[i] = read_cell(r, self.kinds[i], &mut image.text)?;
            Ok(())
        })?;
        if image.cells.contains(&Cell::Missing) {
            return Err("an image without one of the table's columns");
        }
        Ok(())
    }
}

fn read_cell(r: &mut Reader<'_>, kind: u8, text: &mut Vec<u8>) -> Result<Cell, Refusal> {
    if r.null()? {
        return Ok(Cell::Null);
    }
    match kind {
        BOOL => match r.peek()? {
            b't' => r.literal(b"true").map(|()| Cell::Bool(true)),
            b'f' => r.literal(b"false").map(|()| Cell::Bool(false)),
            _ => Err("not a bool in a bool column"),
        },
        STRING | BASE64 => {
            if r.peek()? != b'"' {
                return Err("not a string in a text column");
            }
            let start = text.len();
            r.string_into(text)?;
            Ok(Cell::Text(start, text.len()))
        }
        FLOAT64 => {
            if r.peek()? == b'"' {
                return Err("a string in a float column (NaN or infinity?)");
            }
            let (number, _) = r.number()?;
            // the number's bytes are ASCII; Rust's parse rounds correctly, as Arrow's does
            let v: f64 = std::str::from_utf8(number)
                .map_err(|_| "not a JSON number")?
                .parse()
                .map_err(|_| "not a JSON number")?;
            if !v.is_finite() {
                return Err("a double out of range");
            }
            Ok(Cell::Float(v))
        }
        _ => {
            if !matches!(r.peek()?, b'-' | b'0'..=b'9') {
                return Err("not a number in an integer column");
            }
            let v = r.integer()?;
            let (low, high): (i128, i128) = match kind {
                INT8 => (i8::MIN.into(), i8::MAX.into()),
                INT16 => (i16::MIN.into(), i16::MAX.into()),
                INT32 => (i32::MIN.into(), i32::MAX.into()),
                INT64 => (i64::MIN.into(), i64::MAX.into()),
                UINT8 => (0, u8::MAX.into()),
                UINT16 => (0, u16::MAX.into()),
                UINT32 => (0, u32::MAX.into()),
                UINT64 => (0, u64::MAX.into()),
                _ => return Err("an unknown column kind"),
            };
            if v < low || v > high {
                return Err("an integer out of its column's range");
            }
            Ok(if v < 0 { Cell::Int(v as i64) } else { Cell::Uint(v as u64) })
        }
    }
}
