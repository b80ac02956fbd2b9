//! `PackedValues`: a chunk's message values back to back in one buffer, read as a sequence of
//! bytes (`cdc.stream.kafka_chunks.ChangeChunk.values`).
//!
//! Why: the direct consume (`consume_direct.rs`) made one bytes object per message and a list of
//! them, with the GIL held: ~5,000 allocations per poll that `EnvelopePlan.decode` then took apart
//! again (a `PyBackedBytes` each) and the sink thread freed, also with the GIL, after the batch.
//! Here the values are copied into one buffer while the GIL is released; the decode reads them in
//! place. Python code that indexes, slices or iterates still gets bytes (made on demand): the
//! per-change path, a first value's version, the JSON reader's fallback.

use std::sync::Arc;

use pyo3::exceptions::{PyIndexError, PyTypeError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList, PySlice};

/// Values ``lo..hi`` of a buffer: value i is ``data[bounds[i]..bounds[i + 1]]``.
#[pyclass(frozen, sequence, module = "headwater_native")]
pub(crate) struct PackedValues {
    data: Arc<Vec<u8>>,
    bounds: Arc<Vec<usize>>,
    lo: usize,
    hi: usize,
}

/// What a decode needs of a `PackedValues`, without the GIL (shared, not copied).
pub(crate) struct PackedView {
    data: Arc<Vec<u8>>,
    bounds: Arc<Vec<usize>>,
    lo: usize,
    hi: usize,
}

impl PackedView {
    pub(crate) fn slices(&self) -> Vec<&[u8]> {
        (self.lo..self.hi).map(|i| &self.data[self.bounds[i]..self.bounds[i + 1]]).collect()
    }
}

impl PackedValues {
    /// ``bounds``: one more entry than values, starting at 0, never decreasing, the last at most
    /// ``data.len()``.
    pub(crate) fn new(data: Vec<u8>, bounds: Vec<usize>) -> Self {
        debug_assert!(!bounds.is_empty() && bounds[0] == 0);
        let hi = bounds.len() - 1;
        PackedValues { data: Arc::new(data), bounds: Arc::new(bounds), lo: 0, hi }
    }

    fn value(&self, i: usize) -> &[u8] {
        let at = self.lo + i;
        &self.data[self.bounds[at]..self.bounds[at + 1]]
    }

    pub(crate) fn view(&self) -> PackedView {
        PackedView { data: self.data.clone(), bounds: self.bounds.clone(), lo: self.lo, hi: self.hi }
    }

    fn range(&self, lo: usize, hi: usize) -> Self {
        PackedValues { data: self.data.clone(), bounds: self.bounds.clone(), lo: self.lo + lo, hi: self.lo + hi }
    }
}

#[pymethods]
impl PackedValues {
    /// ``values`` (bytes each) copied into one buffer.
    #[new]
    fn py_new(values: Vec<PyBackedBytes>) -> Self {
        let mut data = Vec::with_capacity(values.iter().map(|v| v.len()).sum());
        let mut bounds = Vec::with_capacity(values.len() + 1);
        bounds.push(0);
        for v in &values {
            data.extend_from_slice(v);
            bounds.push(data.len());
        }
        PackedValues::new(data, bounds)
    }

    fn __len__(&self) -> usize {
        self.hi - self.lo
    }

    /// ``values[i]`` as bytes; ``values[a:b]`` as PackedValues sharing the buffer (a list of bytes
    /// for a step other than 1).
    fn __getitem__<'py>(&self, py: Python<'py>, index: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let n = self.hi - self.lo;
        if let Ok(slice) = index.downcast::<PySlice>() {
            let s = slice.indices(n as isize)?;
            if s.step == 1 {
                let (lo, hi) = (s.start as usize, (s.stop.max(s.start)) as usize);
                return Ok(Bound::new(py, self.range(lo, hi))?.into_any());
            }
            let out = PyList::empty(py);
            let mut i = s.start;
            for _ in 0..s.slicelength {
                out.append(PyBytes::new(py, self.value(i as usize)))?;
                i += s.step;
            }
            return Ok(out.into_any());
        }
        let i: isize = index.extract().map_err(|_| PyTypeError::new_err("indices must be integers or slices"))?;
        let at = if i < 0 { i + n as isize } else { i };
        if at < 0 || at >= n as isize {
            return Err(PyIndexError::new_err("PackedValues index out of range"));
        }
        Ok(PyBytes::new(py, self.value(at as usize)).into_any())
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let out = PyList::empty(py);
        for i in 0..self.hi - self.lo {
            out.append(PyBytes::new(py, self.value(i)))?;
        }
        out.into_any().try_iter().map(Bound::into_any)
    }

    /// The values of ``parts``, in order, in one new buffer (copied without the GIL).
    #[staticmethod]
    fn join(py: Python<'_>, parts: Vec<Bound<'_, PackedValues>>) -> PackedValues {
        let views: Vec<PackedView> = parts.iter().map(|p| p.get().view()).collect();
        py.allow_threads(|| {
            let size: usize = views.iter().map(|v| v.bounds[v.hi] - v.bounds[v.lo]).sum();
            let count: usize = views.iter().map(|v| v.hi - v.lo).sum();
            let mut data = Vec::with_capacity(size);
            let mut bounds = Vec::with_capacity(count + 1);
            bounds.push(0);
            for v in &views {
                for s in v.slices() {
                    data.extend_from_slice(s);
                    bounds.push(data.len());
                }
            }
            PackedValues::new(data, bounds)
        })
    }

    /// The bytes the values take (their buffer's part).
    #[getter]
    fn nbytes(&self) -> usize {
        self.bounds[self.hi] - self.bounds[self.lo]
    }
}
