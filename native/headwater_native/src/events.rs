//! The change events of one rows event (writes or deletes) built in one call: for each row image a
//! `cdc.core.positions.Position` (what `Position.at_row` makes) and a `cdc.core.events.ChangeEvent`.
//!
//! Building them in Python was half of the stream decoder's time on 1000-row statements (a frozen
//! dataclass's `__init__` and `at_row`, ~2.5 us a row). Here the objects are allocated and their
//! slots filled as `object.__setattr__` fills them, with the same values: nothing is computed that
//! the Python path would not compute; the stream decoder keeps that path (for held and skipped
//! rows), and tests/unit/test_speedcap_native_rows.py compares the two.
//!
//! `changes` writes the slots at their offsets (`event_loop::put`, as `EventLoop` does; both
//! classes must be `__slots__` dataclasses): through `PyObject_GenericSetAttr` each of a row's 15 writes was
//! a type lookup and a descriptor call, ~18% of the reading thread's decode of 1000-row
//! statements (perf, benchmarks/results/latest.md "capcpu").

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple, PyType};

use crate::event_loop::{offsets, put};

const MAX_ROW: u64 = 9_999_999_999;

/// Makes the ChangeEvents of rows events for the two classes it was given.
#[pyclass(frozen, module = "headwater_native")]
pub struct EventMaker {
    event_cls: Py<PyType>,
    position_cls: Py<PyType>,
    // for transaction_start and transaction_end (optional: older callers pass only the two above)
    gtid_cls: Option<Py<PyType>>,
    end_cls: Option<Py<PyType>>,
    names: Vec<Py<PyString>>,
    // the slot offsets of Position (gtid, file, offset, row, era, context, _key) and ChangeEvent
    // (op, schema, key, before, after, position, source_ts_ms, transaction_id)
    pos_slots: [isize; 7],
    event_slots: [isize; 8],
}

// indexes into `names`
const GTID: usize = 0;
const FILE: usize = 1;
const OFFSET: usize = 2;
const ROW: usize = 3;
const ERA: usize = 4;
const CONTEXT: usize = 5;
const KEY_TUPLE: usize = 6;
const SOURCE_TS_MS: usize = 13;
const TRANSACTION_ID: usize = 14;
const DOMAIN: usize = 15;
const SERVER_ID: usize = 16;
const SEQ: usize = 17;
const LAST_POSITION: usize = 18;
const ROW_COUNT: usize = 19;
const NEXT_OFFSET: usize = 20;

/// The `Position` slots written in place of setattr calls (EventMaker and EventLoop).
pub(crate) const POSITION_SLOTS: [&str; 7] =
    ["gtid", "file", "offset", "row", "era", "context", "_key"];
/// The `ChangeEvent` slots written in place of setattr calls (EventMaker and EventLoop).
pub(crate) const EVENT_SLOTS: [&str; 8] = [
    "op",
    "schema",
    "key",
    "before",
    "after",
    "position",
    "source_ts_ms",
    "transaction_id",
];

const NAMES: [&str; 21] = [
    "gtid",
    "file",
    "offset",
    "row",
    "era",
    "context",
    "_key",
    "op",
    "schema",
    "key",
    "before",
    "after",
    "position",
    "source_ts_ms",
    "transaction_id",
    "domain",
    "server_id",
    "seq",
    "last_position",
    "row_count",
    "next_offset",
];

pub(crate) fn new_instance<'py>(py: Python<'py>, cls: &Py<PyType>) -> PyResult<Bound<'py, PyAny>> {
    // what object.__new__(cls) does for a class without __new__ of its own: tp_alloc
    unsafe {
        let tp = cls.as_ptr() as *mut ffi::PyTypeObject;
        let obj = ffi::PyType_GenericAlloc(tp, 0);
        Bound::from_owned_ptr_or_err(py, obj)
    }
}

/// Take `t` (a tuple just made, holding no reference cycle yet) out of the cycle collector's lists
/// when none of its items can be in one (no item is a tracked container): what CPython's own
/// `_PyTuple_MaybeUntrack` does to such a tuple at the first collection it survives. Each row makes
/// three such tuples (its image, key and `Position._key`) that the young-generation collections of
/// a capture walked while the hand-over queue held them: untracked from the start they are never
/// walked (benchmarks/results/latest.md, "capcpu", session 8).
#[inline]
pub(crate) fn untrack_if_atomic(t: &Bound<'_, PyTuple>) {
    // SAFETY: t is a live tuple; PyObject_GC_IsTracked is false for items whose type is not a GC
    // type; untracking a tuple only leaves it out of collections (its dealloc checks the flag)
    unsafe {
        let p = t.as_ptr();
        let n = ffi::PyTuple_GET_SIZE(p);
        for j in 0..n {
            if ffi::PyObject_GC_IsTracked(ffi::PyTuple_GET_ITEM(p, j)) != 0 {
                return;
            }
        }
        if ffi::PyObject_GC_IsTracked(p) != 0 {
            ffi::PyObject_GC_UnTrack(p as *mut std::ffi::c_void);
        }
    }
}

/// Take a row's `Position` or `ChangeEvent`, just filled, out of the cycle collector's lists. Both
/// are frozen dataclasses whose slots hold objects that existed before them (the schema, the op,
/// the GTID, the read context: all frozen) or tuples and integers made for them, so nothing they
/// reach can refer back to them: they can never be part of a reference cycle, which is all the
/// collector looks for (CPython untracks tuples and dicts of atomic values on the same grounds).
/// Tracked, every young-generation collection of a capture walked the thousands of them that the
/// hand-over queue holds (benchmarks/results/latest.md, "capcpu", session 8).
#[inline]
pub(crate) fn untrack_frozen(obj: &Bound<'_, PyAny>) {
    // SAFETY: obj is a live object; untracking only leaves it out of collections (its dealloc,
    // subtype_dealloc, untracks it only if tracked)
    unsafe {
        let p = obj.as_ptr();
        if ffi::PyObject_GC_IsTracked(p) != 0 {
            ffi::PyObject_GC_UnTrack(p as *mut std::ffi::c_void);
        }
    }
}

/// `parts` as a tuple, `value` in place of item `at`: a row's `Position._key` from its
/// transaction's (`tx_pos._key` with the row index), without a Vec per row.
pub(crate) fn tuple_replacing<'py>(
    py: Python<'py>,
    parts: &[Bound<'py, PyAny>],
    at: usize,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyTuple>> {
    // SAFETY: a new tuple of parts.len() items, each set once to a new reference
    unsafe {
        let t = ffi::PyTuple_New(parts.len() as ffi::Py_ssize_t);
        if t.is_null() {
            return Err(PyErr::fetch(py));
        }
        for (j, part) in parts.iter().enumerate() {
            let item = if j == at { value.as_ptr() } else { part.as_ptr() };
            ffi::Py_INCREF(item);
            ffi::PyTuple_SET_ITEM(t, j as ffi::Py_ssize_t, item);
        }
        let t: Bound<'py, PyTuple> = Bound::from_owned_ptr(py, t).downcast_into_unchecked();
        untrack_if_atomic(&t);
        Ok(t)
    }
}

/// `tuple(image[k] for k in indexes)` (a row's key), IndexError past the image's end.
pub(crate) fn picked<'py>(
    py: Python<'py>,
    image: &Bound<'py, PyTuple>,
    indexes: &[usize],
) -> PyResult<Bound<'py, PyTuple>> {
    let len = image.len();
    if let Some(bad) = indexes.iter().find(|k| **k >= len) {
        return Err(pyo3::exceptions::PyIndexError::new_err(format!(
            "key column {bad} past the row image's {len} values"
        )));
    }
    // SAFETY: a new tuple of indexes.len() items, each set once to a new reference to an item
    // of `image` (every index checked above)
    unsafe {
        let t = ffi::PyTuple_New(indexes.len() as ffi::Py_ssize_t);
        if t.is_null() {
            return Err(PyErr::fetch(py));
        }
        for (j, k) in indexes.iter().enumerate() {
            let item = ffi::PyTuple_GET_ITEM(image.as_ptr(), *k as ffi::Py_ssize_t);
            ffi::Py_INCREF(item);
            ffi::PyTuple_SET_ITEM(t, j as ffi::Py_ssize_t, item);
        }
        let t: Bound<'py, PyTuple> = Bound::from_owned_ptr(py, t).downcast_into_unchecked();
        untrack_if_atomic(&t);
        Ok(t)
    }
}

pub(crate) fn set(obj: &Bound<'_, PyAny>, name: &Py<PyString>, value: &Bound<'_, PyAny>) -> PyResult<()> {
    // object.__setattr__: the slot's descriptor, past a frozen dataclass's __setattr__
    let rc = unsafe { ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(PyErr::fetch(obj.py()))
    }
}

#[pymethods]
impl EventMaker {
    #[new]
    #[pyo3(signature = (event_cls, position_cls, gtid_cls=None, end_cls=None))]
    fn new(
        py: Python<'_>,
        event_cls: Py<PyType>,
        position_cls: Py<PyType>,
        gtid_cls: Option<Py<PyType>>,
        end_cls: Option<Py<PyType>>,
    ) -> PyResult<Self> {
        let names = NAMES
            .iter()
            .map(|n| PyString::intern(py, n).unbind())
            .collect();
        let pos_slots = offsets(
            position_cls.bind(py),
            POSITION_SLOTS,
        )?;
        let event_slots = offsets(
            event_cls.bind(py),
            EVENT_SLOTS,
        )?;
        Ok(EventMaker {
            event_cls,
            position_cls,
            gtid_cls,
            end_cls,
            names,
            pos_slots,
            event_slots,
        })
    }

    /// A GTID event's `(Gtid(domain, server_id, seq), file_pos.in_same_file(gtid, offset, 0,
    /// context), str(gtid))`: the same objects, without the range checks a binlog's fixed-width
    /// fields cannot fail (the caller checks the offset). Once per transaction, these were a third
    /// of the stream decoder's time on single-row transactions.
    #[pyo3(signature = (file_pos, domain, server_id, seq, offset, context))]
    fn transaction_start<'py>(
        &self,
        py: Python<'py>,
        file_pos: &Bound<'py, PyAny>,
        domain: u32,
        server_id: u32,
        seq: u64,
        offset: u32,
        context: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, String)> {
        let n = &self.names;
        let Some(gtid_cls) = &self.gtid_cls else {
            return Err(PyValueError::new_err("EventMaker made without gtid_cls"));
        };
        let key_tuple = file_pos.getattr(&n[KEY_TUPLE])?;
        let key_tuple = key_tuple.downcast::<PyTuple>()?;
        if key_tuple.len() != 8 {
            return Err(PyValueError::new_err("Position._key must have 8 fields"));
        }
        let domain_obj = domain.into_pyobject(py)?.into_any();
        let server_obj = server_id.into_pyobject(py)?.into_any();
        let seq_obj = seq.into_pyobject(py)?.into_any();
        let offset_obj = offset.into_pyobject(py)?.into_any();
        let zero = 0u32.into_pyobject(py)?.into_any();
        let gtid = new_instance(py, gtid_cls)?;
        set(&gtid, &n[DOMAIN], &domain_obj)?;
        set(&gtid, &n[SERVER_ID], &server_obj)?;
        set(&gtid, &n[SEQ], &seq_obj)?;
        let position = new_instance(py, &self.position_cls)?;
        set(&position, &n[GTID], &gtid)?;
        set(&position, &n[FILE], &file_pos.getattr(&n[FILE])?)?;
        set(&position, &n[OFFSET], &offset_obj)?;
        set(&position, &n[ROW], &zero)?;
        set(&position, &n[ERA], &file_pos.getattr(&n[ERA])?)?;
        set(&position, &n[CONTEXT], context)?;
        let key = PyTuple::new(
            py,
            [
                key_tuple.get_item(0)?,
                key_tuple.get_item(1)?,
                offset_obj,
                zero,
                domain_obj,
                server_obj,
                seq_obj,
                key_tuple.get_item(7)?,
            ],
        )?;
        set(&position, &n[KEY_TUPLE], key.as_any())?;
        Ok((gtid, position, format!("{domain}-{server_id}-{seq}")))
    }

    /// `TransactionEnd(transaction_id, last_position, row_count, source_ts_ms, next_offset)`,
    /// its slots filled as the frozen dataclass's `__init__` fills them.
    #[pyo3(signature = (transaction_id, last_position, row_count, source_ts_ms, next_offset))]
    fn transaction_end<'py>(
        &self,
        py: Python<'py>,
        transaction_id: &Bound<'py, PyAny>,
        last_position: &Bound<'py, PyAny>,
        row_count: &Bound<'py, PyAny>,
        source_ts_ms: &Bound<'py, PyAny>,
        next_offset: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let n = &self.names;
        let Some(end_cls) = &self.end_cls else {
            return Err(PyValueError::new_err("EventMaker made without end_cls"));
        };
        let end = new_instance(py, end_cls)?;
        set(&end, &n[TRANSACTION_ID], transaction_id)?;
        set(&end, &n[LAST_POSITION], last_position)?;
        set(&end, &n[ROW_COUNT], row_count)?;
        set(&end, &n[SOURCE_TS_MS], source_ts_ms)?;
        set(&end, &n[NEXT_OFFSET], next_offset)?;
        Ok(end)
    }

    /// The ChangeEvents of `images` (each the `after` image when `inserted`, else the `before`
    /// image), numbered from row `row` of the transaction at `tx_pos`. `key_indexes` empty: no key
    /// (None), as `key_getter(())` gives.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (op, schema, key_indexes, inserted, images, tx_pos, row, ts_ms, transaction_id))]
    fn changes<'py>(
        &self,
        py: Python<'py>,
        op: &Bound<'py, PyAny>,
        schema: &Bound<'py, PyAny>,
        key_indexes: Vec<usize>,
        inserted: bool,
        images: &Bound<'py, PyList>,
        tx_pos: &Bound<'py, PyAny>,
        row: u64,
        ts_ms: &Bound<'py, PyAny>,
        transaction_id: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let count = images.len() as u64;
        if count > 0 && row + count - 1 > MAX_ROW {
            return Err(PyValueError::new_err(format!(
                "row index {} over {MAX_ROW}",
                row + count - 1
            )));
        }
        let tx = self.tx_parts(tx_pos)?;
        let none = py.None().into_bound(py);
        let out = PyList::empty(py);
        for (i, image) in images.iter().enumerate() {
            let image = image.downcast::<PyTuple>()?;
            let key = if key_indexes.is_empty() {
                none.clone()
            } else {
                picked(py, image, &key_indexes)?.into_any()
            };
            let (before, after) = if inserted {
                (&none, image.as_any())
            } else {
                (image.as_any(), &none)
            };
            let event = self.event(
                py,
                &tx,
                row + i as u64,
                [op, schema, &key, before, after, ts_ms, transaction_id],
            )?;
            out.append(event)?;
        }
        Ok(out)
    }

    /// The ChangeEvents of an update rows event's `pairs` (`(before, after)` image tuples),
    /// numbered from row `row` of the transaction at `tx_pos`, as the stream decoder's Python path
    /// makes them: `ops[0]` (update) where the key is the same before and after, else `ops[1]`
    /// (delete) of the old key then `ops[2]` (create) of the new one, each its own row.
    /// `key_indexes` empty: no key (None), so always an update. None when a row index could pass
    /// MAX_ROW (the Python path then raises its own error). The wiki workload's page updates (5% of
    /// its rows) cost ~3 us a row through `Position.at_row` and the dataclass `__init__` there.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (ops, schema, key_indexes, pairs, tx_pos, row, ts_ms, transaction_id))]
    fn updates<'py>(
        &self,
        py: Python<'py>,
        ops: (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>),
        schema: &Bound<'py, PyAny>,
        key_indexes: Vec<usize>,
        pairs: &Bound<'py, PyList>,
        tx_pos: &Bound<'py, PyAny>,
        row: u64,
        ts_ms: &Bound<'py, PyAny>,
        transaction_id: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let count = pairs.len() as u64;
        if count > 0 && row + 2 * count - 1 > MAX_ROW {
            return Ok(None);
        }
        let tx = self.tx_parts(tx_pos)?;
        let none = py.None().into_bound(py);
        let out = PyList::empty(py);
        let key_of = |image: &Bound<'py, PyTuple>| -> PyResult<Bound<'py, PyAny>> {
            if key_indexes.is_empty() {
                Ok(none.clone())
            } else {
                Ok(picked(py, image, &key_indexes)?.into_any())
            }
        };
        let mut row = row;
        let mut emit = |op: &Bound<'py, PyAny>,
                        key: &Bound<'py, PyAny>,
                        before: &Bound<'py, PyAny>,
                        after: &Bound<'py, PyAny>|
         -> PyResult<()> {
            let event = self.event(
                py,
                &tx,
                row,
                [op, schema, key, before, after, ts_ms, transaction_id],
            )?;
            row += 1;
            out.append(event)
        };
        for pair in pairs.iter() {
            let pair = pair.downcast::<PyTuple>()?;
            let before = pair.get_item(0)?;
            let after = pair.get_item(1)?;
            let key = key_of(after.downcast::<PyTuple>()?)?;
            let old_key = key_of(before.downcast::<PyTuple>()?)?;
            if key.eq(&old_key)? {
                emit(&ops.0, &key, &before, &after)?;
            } else {
                emit(&ops.1, &old_key, &before, &none)?;
                emit(&ops.2, &key, &none, &after)?;
            }
        }
        Ok(Some(out))
    }
}

/// The fields of a transaction's Position that every row's Position copies.
struct TxParts<'py> {
    gtid: Bound<'py, PyAny>,
    file: Bound<'py, PyAny>,
    offset: Bound<'py, PyAny>,
    era: Bound<'py, PyAny>,
    context: Bound<'py, PyAny>,
    key_parts: Vec<Bound<'py, PyAny>>,
}

impl EventMaker {
    fn tx_parts<'py>(&self, tx_pos: &Bound<'py, PyAny>) -> PyResult<TxParts<'py>> {
        let n = &self.names;
        let key_tuple = tx_pos.getattr(&n[KEY_TUPLE])?;
        let key_tuple = key_tuple.downcast::<PyTuple>()?;
        if key_tuple.len() != 8 {
            return Err(PyValueError::new_err("Position._key must have 8 fields"));
        }
        Ok(TxParts {
            gtid: tx_pos.getattr(&n[GTID])?,
            file: tx_pos.getattr(&n[FILE])?,
            offset: tx_pos.getattr(&n[OFFSET])?,
            era: tx_pos.getattr(&n[ERA])?,
            context: tx_pos.getattr(&n[CONTEXT])?,
            key_parts: key_tuple.iter().collect(),
        })
    }

    /// One ChangeEvent at row `row` of the transaction `tx`; `fields` are its op, schema, key,
    /// before, after, ts_ms and transaction_id, in the event's slot order (its Position goes between
    /// after and ts_ms).
    fn event<'py>(
        &self,
        py: Python<'py>,
        tx: &TxParts<'py>,
        row: u64,
        fields: [&Bound<'py, PyAny>; 7],
    ) -> PyResult<Bound<'py, PyAny>> {
        let (pos_slots, event_slots) = (&self.pos_slots, &self.event_slots);
        let index = row.into_pyobject(py)?.into_any();
        let position = new_instance(py, &self.position_cls)?;
        put(&position, pos_slots[0], &tx.gtid);
        put(&position, pos_slots[1], &tx.file);
        put(&position, pos_slots[2], &tx.offset);
        put(&position, pos_slots[3], &index);
        put(&position, pos_slots[4], &tx.era);
        put(&position, pos_slots[5], &tx.context);
        put(&position, pos_slots[6], tuple_replacing(py, &tx.key_parts, 3, &index)?.as_any());
        let event = new_instance(py, &self.event_cls)?;
        let [op, schema, key, before, after, ts_ms, transaction_id] = fields;
        put(&event, event_slots[0], op);
        put(&event, event_slots[1], schema);
        put(&event, event_slots[2], key);
        put(&event, event_slots[3], before);
        put(&event, event_slots[4], after);
        put(&event, event_slots[5], &position);
        put(&event, event_slots[6], ts_ms);
        put(&event, event_slots[7], transaction_id);
        untrack_frozen(&position);
        untrack_frozen(&event);
        Ok(event)
    }
}
