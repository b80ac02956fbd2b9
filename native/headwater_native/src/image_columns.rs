//! Embedded mode's columns (`cdc/daemon/embedded_columns.py`): a chunk's row images (the captured
//! ChangeEvents' tuples of Python values) turned column by column into Arrow buffers in one pass,
//! instead of transposing them in Python (`zip(*images)`), testing every value's class and calling
//! `pa.array` per column (~1 us per change of the benchmark's tables; this: see the module's caller).
//!
//! It gives exactly what `pa.array(values, type)` gives for the values the Python path accepts, and
//! refuses the whole chunk (None) where the Python path refuses it: a value whose class is not the
//! one its column's kind is captured as (exact classes: no bool among ints, no datetime among
//! dates), an integer out of its type's range, a non-finite double, text that is not valid UTF-8 (a
//! lone surrogate), a DATETIME with a zone. Kinds it does not make (code 0: decimals, float32,
//! zoned timestamps, ...) come back as None for that column, and Python makes them as before.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyBytes, PyDate, PyDateAccess, PyDateTime, PyFloat, PyInt, PyList, PyString,
    PyTimeAccess, PyTuple, PyTzInfoAccess,
};

// Column codes, as `cdc/daemon/embedded_columns.py` numbers them (0: left to Python).
const BOOL: u8 = 1;
const INT8: u8 = 2;
const INT16: u8 = 3;
const INT32: u8 = 4;
const INT64: u8 = 5;
const UINT8: u8 = 6;
const UINT16: u8 = 7;
const UINT32: u8 = 8;
const UINT64: u8 = 9;
const FLOAT64: u8 = 10;
const STRING: u8 = 11;
const BINARY: u8 = 12;
const DATE32: u8 = 13;
const TIMESTAMP_US: u8 = 14; // wall clock, no zone

/// The chunk is refused: the Python path would refuse it too.
struct Refused;

struct Out {
    code: u8,
    nulls: usize,
    validity: Vec<u8>,
    values: Vec<u8>,
    data: Vec<u8>,
}

impl Out {
    fn new(code: u8, n: usize) -> Self {
        let width = match code {
            BOOL => 0,
            INT8 | UINT8 => 1,
            INT16 | UINT16 => 2,
            INT32 | UINT32 | DATE32 | STRING | BINARY => 4,
            _ => 8,
        };
        let mut values = if code == BOOL {
            vec![0u8; n.div_ceil(8)]
        } else {
            Vec::with_capacity(width * (n + 1))
        };
        if code == STRING || code == BINARY {
            values.extend_from_slice(&0i32.to_le_bytes());
        }
        Out {
            code,
            nulls: 0,
            validity: vec![0xffu8; n.div_ceil(8)],
            values,
            data: Vec::new(),
        }
    }

    fn null(&mut self, i: usize) {
        self.nulls += 1;
        self.validity[i / 8] &= !(1 << (i % 8));
        match self.code {
            BOOL => {}
            STRING | BINARY => {
                let end = self.data.len() as i32;
                self.values.extend_from_slice(&end.to_le_bytes());
            }
            INT8 | UINT8 => self.values.push(0),
            INT16 | UINT16 => self.values.extend_from_slice(&[0; 2]),
            INT32 | UINT32 | DATE32 => self.values.extend_from_slice(&[0; 4]),
            _ => self.values.extend_from_slice(&[0; 8]),
        }
    }

    fn bytes(&mut self, value: &[u8]) -> Result<(), Refused> {
        self.data.extend_from_slice(value);
        // past 2 GiB a string array's offsets overflow: pa.array would make a chunked array
        let end = i32::try_from(self.data.len()).map_err(|_| Refused)?;
        self.values.extend_from_slice(&end.to_le_bytes());
        Ok(())
    }

    fn push(&mut self, i: usize, v: &Bound<'_, PyAny>) -> Result<(), Refused> {
        match self.code {
            BOOL => {
                if !v.is_exact_instance_of::<PyBool>() {
                    return Err(Refused);
                }
                if v.is_truthy().map_err(|_| Refused)? {
                    self.values[i / 8] |= 1 << (i % 8);
                }
            }
            INT8 | INT16 | INT32 | INT64 => {
                if !v.is_exact_instance_of::<PyInt>() {
                    return Err(Refused);
                }
                let x: i64 = v.extract().map_err(|_| Refused)?;
                match self.code {
                    INT8 => self
                        .values
                        .push(i8::try_from(x).map_err(|_| Refused)? as u8),
                    INT16 => self
                        .values
                        .extend_from_slice(&i16::try_from(x).map_err(|_| Refused)?.to_le_bytes()),
                    INT32 => self
                        .values
                        .extend_from_slice(&i32::try_from(x).map_err(|_| Refused)?.to_le_bytes()),
                    _ => self.values.extend_from_slice(&x.to_le_bytes()),
                }
            }
            UINT8 | UINT16 | UINT32 | UINT64 => {
                if !v.is_exact_instance_of::<PyInt>() {
                    return Err(Refused);
                }
                let x: u64 = v.extract().map_err(|_| Refused)?;
                match self.code {
                    UINT8 => self.values.push(u8::try_from(x).map_err(|_| Refused)?),
                    UINT16 => self
                        .values
                        .extend_from_slice(&u16::try_from(x).map_err(|_| Refused)?.to_le_bytes()),
                    UINT32 => self
                        .values
                        .extend_from_slice(&u32::try_from(x).map_err(|_| Refused)?.to_le_bytes()),
                    _ => self.values.extend_from_slice(&x.to_le_bytes()),
                }
            }
            FLOAT64 => {
                if !v.is_exact_instance_of::<PyFloat>() {
                    return Err(Refused);
                }
                let x = v.downcast::<PyFloat>().map_err(|_| Refused)?.value();
                if !x.is_finite() {
                    return Err(Refused); // the envelope spells those as strings; its decode refuses them
                }
                self.values.extend_from_slice(&x.to_le_bytes());
            }
            STRING => {
                if !v.is_exact_instance_of::<PyString>() {
                    return Err(Refused);
                }
                let s = v.downcast::<PyString>().map_err(|_| Refused)?;
                let text = s.to_str().map_err(|_| Refused)?; // a lone surrogate: not UTF-8
                self.bytes(text.as_bytes())?;
            }
            BINARY => {
                if !v.is_exact_instance_of::<PyBytes>() {
                    return Err(Refused);
                }
                let b = v.downcast::<PyBytes>().map_err(|_| Refused)?;
                self.bytes(b.as_bytes())?;
            }
            DATE32 => {
                if !v.is_exact_instance_of::<PyDate>() {
                    return Err(Refused);
                }
                let d = v.downcast::<PyDate>().map_err(|_| Refused)?;
                let days = days_from_civil(
                    d.get_year() as i64,
                    d.get_month() as i64,
                    d.get_day() as i64,
                );
                self.values.extend_from_slice(&(days as i32).to_le_bytes());
            }
            TIMESTAMP_US => {
                if !v.is_exact_instance_of::<PyDateTime>() {
                    return Err(Refused);
                }
                let t = v.downcast::<PyDateTime>().map_err(|_| Refused)?;
                if t.get_tzinfo().is_some() {
                    return Err(Refused); // cast to UTC by Arrow, kept as its wall clock by the envelope
                }
                let days = days_from_civil(
                    t.get_year() as i64,
                    t.get_month() as i64,
                    t.get_day() as i64,
                );
                let seconds = days * 86_400
                    + t.get_hour() as i64 * 3600
                    + t.get_minute() as i64 * 60
                    + t.get_second() as i64;
                let micros = seconds * 1_000_000 + t.get_microsecond() as i64;
                self.values.extend_from_slice(&micros.to_le_bytes());
            }
            _ => return Err(Refused),
        }
        Ok(())
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

type Buffers<'py> = (
    usize,
    Option<Bound<'py, PyBytes>>,
    Bound<'py, PyBytes>,
    Option<Bound<'py, PyBytes>>,
);

/// The columns of ``images`` (a list of tuples of ``len(codes)`` values, or None) by ``codes``:
/// per column ``(null_count, validity or None when no null, values or offsets, data or None)``, or
/// None for a column coded 0; None for the whole chunk where the Python path refuses it.
#[pyfunction]
pub fn image_columns<'py>(
    py: Python<'py>,
    images: &Bound<'py, PyList>,
    codes: Vec<u8>,
) -> PyResult<Option<Vec<Option<Buffers<'py>>>>> {
    let n = images.len();
    let mut outs: Vec<Option<Out>> = codes
        .iter()
        .map(|&c| if c == 0 { None } else { Some(Out::new(c, n)) })
        .collect();
    for (i, image) in images.iter().enumerate() {
        let image = image.downcast::<PyTuple>()?;
        if image.len() != codes.len() {
            return Err(PyValueError::new_err(format!(
                "image_columns: an image has {} values for {} columns",
                image.len(),
                codes.len()
            )));
        }
        for (out, value) in outs.iter_mut().zip(image.iter()) {
            if let Some(out) = out {
                if value.is_none() {
                    out.null(i);
                } else if out.push(i, &value).is_err() {
                    return Ok(None);
                }
            }
        }
    }
    Ok(Some(
        outs.into_iter()
            .map(|out| {
                out.map(|o| {
                    let validity = if o.nulls > 0 {
                        Some(PyBytes::new(py, &o.validity))
                    } else {
                        None
                    };
                    let data = if o.code == STRING || o.code == BINARY {
                        Some(PyBytes::new(py, &o.data))
                    } else {
                        None
                    };
                    (o.nulls, validity, PyBytes::new(py, &o.values), data)
                })
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::days_from_civil;

    #[test]
    fn days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
        assert_eq!(days_from_civil(9999, 12, 31), 2_932_896);
    }
}

/// `e.position.to_string()` of each of ``events`` (ChangeEvents) as a string array's
/// ``(offsets, data)``, read from each position's ``_key`` (cdc/core/positions.py spells the same
/// three forms: ``format_tag``, ``era_tag`` for later eras, ``lsn_tag`` for ``lsn_base`` files);
/// None when a key is not as expected (the caller spells them in Python).
#[pyfunction]
pub fn position_texts<'py>(
    py: Python<'py>,
    events: &Bound<'py, PyList>,
    format_tag: &str,
    era_tag: &str,
    lsn_tag: &str,
    lsn_base: &str,
) -> PyResult<Option<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>> {
    use std::io::Write;
    let n = events.len();
    let mut offsets: Vec<u8> = Vec::with_capacity(4 * (n + 1));
    offsets.extend_from_slice(&0i32.to_le_bytes());
    let mut data: Vec<u8> = Vec::with_capacity(96 * n);
    let position_name = pyo3::intern!(py, "position");
    let key_name = pyo3::intern!(py, "_key");
    // where the row index goes (found before the file's base name, the only free text)
    const ROW: &str = "#ROW#";
    let mut last: Option<([u64; 6], String, Vec<u8>, Vec<u8>)> = None;
    for event in events.iter() {
        let key = event.getattr(position_name)?.getattr(key_name)?;
        let Ok(key) = key.downcast::<PyTuple>() else {
            return Ok(None);
        };
        if key.len() != 8 {
            return Ok(None);
        }
        let mut v = [0u64; 7];
        for (i, slot) in v.iter_mut().enumerate() {
            let item = key.get_item(i)?;
            if !item.is_exact_instance_of::<PyInt>() {
                return Ok(None);
            }
            match item.extract::<u64>() {
                Ok(x) => *slot = x,
                Err(_) => return Ok(None),
            }
        }
        let base_item = key.get_item(7)?;
        let Ok(base) = base_item.downcast::<PyString>() else {
            return Ok(None);
        };
        let Ok(base) = base.to_str() else {
            return Ok(None);
        };
        let [era, file_seq, offset, row, domain, server, seq] = v;
        let same = matches!(&last, Some((k, b, _, _)) if *k == [era, file_seq, offset, domain, server, seq] && b == base);
        if !same {
            // the text before and after the row index, spelled once per transaction
            let mut text: Vec<u8> = Vec::with_capacity(96);
            let written = if base == lsn_base {
                write!(
                    text,
                    "{lsn_tag}{file_seq:010X}:{offset:010X}:{ROW}:{server:010}-{seq:020}"
                )
            } else if era != 0 {
                write!(
                    text,
                    "{era_tag}:{era:010}:{file_seq:010}:{offset:010}:{ROW}:{domain:010}-{server:010}-{seq:020}:{base}"
                )
            } else {
                write!(
                    text,
                    "{format_tag}:{file_seq:010}:{offset:010}:{ROW}:{domain:010}-{server:010}-{seq:020}:{base}"
                )
            };
            written.map_err(|e| PyValueError::new_err(e.to_string()))?;
            let at = text
                .windows(ROW.len())
                .position(|w| w == ROW.as_bytes())
                .expect("the row's place");
            let tail = text[at + ROW.len()..].to_vec();
            text.truncate(at);
            last = Some((
                [era, file_seq, offset, domain, server, seq],
                base.to_owned(),
                text,
                tail,
            ));
        }
        let (_, _, head, tail) = last.as_ref().expect("set above");
        data.extend_from_slice(head);
        if row < 10_000_000_000 {
            let mut digits = [b'0'; 10];
            let mut r = row;
            for d in digits.iter_mut().rev() {
                *d = b'0' + (r % 10) as u8;
                r /= 10;
            }
            data.extend_from_slice(&digits);
        } else {
            write!(data, "{row}").map_err(|e| PyValueError::new_err(e.to_string()))?;
        }
        data.extend_from_slice(tail);
        let Ok(end) = i32::try_from(data.len()) else {
            return Ok(None);
        };
        offsets.extend_from_slice(&end.to_le_bytes());
    }
    Ok(Some((PyBytes::new(py, &offsets), PyBytes::new(py, &data))))
}
