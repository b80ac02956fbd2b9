//! A snapshot chunk's result rows (mysqlclient's tuples of the server's text bytes, or None) turned
//! column by column into the buffers of Arrow `large_binary` arrays: one pass over the rows, no
//! Python object made per value. `snapshotter/text_columns.py` wraps the buffers as Arrow arrays
//! (zero-copy) and casts them to each column's type with Arrow's own parsers, falling back to the
//! per-value Python converters for whatever those do not give exactly.
//!
//! Transposing in Python (`zip(*rows)` then `pa.array(column, pa.binary())`) cost about as much as
//! fetching the rows (benchmarks/results/latest.md, section bootarrow).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

struct Column {
    data: Vec<u8>,
    offsets: Vec<u8>, // i64 little-endian, rows + 1 of them
    validity: Vec<u8>, // one bit per row, least significant first; 1 = a value
    nulls: usize,
}

impl Column {
    fn new(rows: usize) -> Self {
        let mut offsets = Vec::with_capacity((rows + 1) * 8);
        offsets.extend_from_slice(&0i64.to_le_bytes());
        Column {
            data: Vec::new(),
            offsets,
            validity: vec![0u8; rows.div_ceil(8)],
            nulls: 0,
        }
    }
}

/// Each column of ``rows`` (a list of tuples of ``ncols`` values, each bytes or None) as
/// ``(data, offsets, validity, null_count)``: a `large_binary` array's buffers, ``validity`` None
/// when the column has no null.
#[pyfunction]
pub fn text_columns<'py>(
    py: Python<'py>,
    rows: &Bound<'py, PyAny>,
    ncols: usize,
) -> PyResult<Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>, Option<Bound<'py, PyBytes>>, usize)>> {
    // mysqlclient's fetchall gives a tuple, fetchmany a list
    let items: Vec<Bound<'py, PyAny>> = if let Ok(t) = rows.downcast::<PyTuple>() {
        t.iter().collect()
    } else if let Ok(l) = rows.downcast::<PyList>() {
        l.iter().collect()
    } else {
        return Err(PyTypeError::new_err("text_columns: rows must be a tuple or a list"));
    };
    let n = items.len();
    let mut cols: Vec<Column> = (0..ncols).map(|_| Column::new(n)).collect();
    for (r, row) in items.iter().enumerate() {
        let row = row
            .downcast::<PyTuple>()
            .map_err(|_| PyTypeError::new_err("text_columns: a row is not a tuple"))?;
        if row.len() != ncols {
            return Err(PyValueError::new_err(format!(
                "text_columns: a row has {} values for {} columns",
                row.len(),
                ncols
            )));
        }
        for (c, value) in row.iter().enumerate() {
            let col = &mut cols[c];
            if value.is_none() {
                col.nulls += 1;
            } else {
                let bytes = value
                    .downcast::<PyBytes>()
                    .map_err(|_| PyTypeError::new_err("text_columns: a value is neither bytes nor None"))?;
                col.data.extend_from_slice(bytes.as_bytes());
                col.validity[r >> 3] |= 1 << (r & 7);
            }
            col.offsets
                .extend_from_slice(&(col.data.len() as i64).to_le_bytes());
        }
    }
    Ok(cols
        .into_iter()
        .map(|col| {
            let validity = if col.nulls > 0 {
                Some(PyBytes::new(py, &col.validity))
            } else {
                None
            };
            (
                PyBytes::new(py, &col.data),
                PyBytes::new(py, &col.offsets),
                validity,
                col.nulls,
            )
        })
        .collect())
}

/// PostgreSQL's text form of bytea (``\\x`` and two lowercase hex digits a byte) of each of ``n``
/// values of a `large_binary` array given as its ``data`` and ``offsets`` (``n + 1`` little-endian
/// i64, the first one need not be 0): ``(data, offsets)`` of the `large_string` array of the texts.
/// A null's text is ``\\x``; the caller keeps the input's validity.
#[pyfunction]
pub fn bytea_hex<'py>(
    py: Python<'py>,
    data: &[u8],
    offsets: &[u8],
    n: usize,
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if offsets.len() != (n + 1) * 8 {
        return Err(PyValueError::new_err("bytea_hex: offsets must hold n + 1 values"));
    }
    let at = |i: usize| i64::from_le_bytes(offsets[i * 8..i * 8 + 8].try_into().unwrap());
    let (first, last) = (at(0), at(n));
    if first < 0 || last < first || last as usize > data.len() {
        return Err(PyValueError::new_err("bytea_hex: offsets outside the data"));
    }
    let mut out = Vec::with_capacity((last - first) as usize * 2 + n * 2);
    let mut out_offsets = Vec::with_capacity((n + 1) * 8);
    out_offsets.extend_from_slice(&0i64.to_le_bytes());
    for i in 0..n {
        let (start, end) = (at(i), at(i + 1));
        if end < start || end > last {
            return Err(PyValueError::new_err("bytea_hex: offsets not rising"));
        }
        out.extend_from_slice(b"\\x");
        for &b in &data[start as usize..end as usize] {
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
        }
        out_offsets.extend_from_slice(&(out.len() as i64).to_le_bytes());
    }
    Ok((PyBytes::new(py, &out), PyBytes::new(py, &out_offsets)))
}
