//! The stream decoder's common transactions in one call: `EventLoop.run` walks a list of raw binlog
//! events and returns the records of the whole transactions it takes (ChangeEvents, then a
//! TransactionEnd each: the records `MessageMaker.transactions` consumes), so nothing per event
//! comes back to Python on single-row transactions.
//!
//! It takes a transaction only whole, from its GTID event to its XID (or COMMIT query), and only
//! one made of: GTID (transactional, not standalone), TABLE_MAP of a table the Python decoder
//! already compiled and registered, WRITE/UPDATE/DELETE_ROWS (v1/v2) with full images, BEGIN, a
//! heartbeat or an ANNOTATE_ROWS (nothing to emit). A transaction that touched no captured table
//! is taken too, and `run` returns right after it, for the Python decoder's throttled progress. At
//! anything else (an event between transactions, DDL, a table not yet compiled, a partial image,
//! several GTID domains, the list ending inside the transaction) it stops at that transaction's
//! GTID event and returns: the Python path (cdc/sources/mariadb/stream_decoder.py)
//! decodes from exactly there, with the same state. Its records are built as the Python path
//! builds them (same classes, same slot values); tests/unit/test_caploop_*.py compare the two.

use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use crate::events::{new_instance, picked, tuple_replacing, untrack_frozen, EVENT_SLOTS, POSITION_SLOTS};
use crate::rows::RowsPlan;

const HEADER_LEN: usize = 19;
const QUERY: u8 = 2;
const XID: u8 = 16;
const TABLE_MAP: u8 = 19;
const HEARTBEAT: u8 = 27;
const ANNOTATE_ROWS: u8 = 160;
const GTID: u8 = 162;
const FL_STANDALONE: u8 = 1;
const FL_TRANSACTIONAL: u8 = 4;
const MAX_ROW: u64 = 9_999_999_999;
// the rows events a transaction taken here may have (see EventLoop::small)
const MAX_ROWS_BYTES: usize = 16 * 1024;

// indexes into `names` (attributes read; the records' slots are written by offset, `Slots`)
const N_FILE: usize = 0;
const N_ERA: usize = 1;
const N_KEY_TUPLE: usize = 2;
const N_GTIDS: usize = 3;
const N_DOMAIN: usize = 4;
const NAMES: [&str; 5] = ["file", "era", "_key", "gtids", "domain"];

/// Where each class keeps its attributes (byte offsets of their slots, see `slot_offset`): the
/// records are filled by writing the slots directly, as `object.__setattr__` ends up doing, without
/// its attribute lookup and descriptor call for each of a transaction's ~35 fields.
struct Slots {
    pos: [isize; 7],     // gtid, file, offset, row, era, context, _key
    event: [isize; 8],   // op, schema, key, before, after, position, source_ts_ms, transaction_id
    gtid: [isize; 3],    // domain, server_id, seq
    end: [isize; 5],     // transaction_id, last_position, row_count, source_ts_ms, next_offset
    state: [isize; 1],   // gtids
    context: [isize; 2], // server_id, gtid_state
}

/// The byte offset of `cls`'s `__slots__` attribute `name` in its instances, from the member
/// descriptor CPython made for it; refused unless it is `cls`'s own writable object slot.
pub(crate) fn slot_offset(cls: &Bound<'_, PyType>, name: &str) -> PyResult<isize> {
    let descr = cls.getattr(name)?;
    let bad = || PyValueError::new_err(format!("{}.{name} is not a writable __slots__ member", cls));
    unsafe {
        let ptr = descr.as_ptr();
        if ffi::Py_TYPE(ptr) != std::ptr::addr_of_mut!(ffi::PyMemberDescr_Type) {
            return Err(bad());
        }
        let member_descr = ptr.cast::<ffi::PyMemberDescrObject>();
        if (*member_descr).d_common.d_type != cls.as_ptr().cast::<ffi::PyTypeObject>() {
            return Err(bad());
        }
        // pyo3-ffi declares d_member as a PyGetSetDef pointer; CPython's is a PyMemberDef
        let member = (*member_descr).d_member.cast::<ffi::PyMemberDef>();
        if (*member).type_code != ffi::Py_T_OBJECT_EX
            || (*member).flags & ffi::Py_READONLY != 0
            || (*member).offset < std::mem::size_of::<ffi::PyObject>() as isize
        {
            return Err(bad());
        }
        Ok((*member).offset)
    }
}

pub(crate) fn offsets<const N: usize>(
    cls: &Bound<'_, PyType>,
    names: [&str; N],
) -> PyResult<[isize; N]> {
    let mut out = [0isize; N];
    for (slot, name) in out.iter_mut().zip(names) {
        *slot = slot_offset(cls, name)?;
    }
    Ok(out)
}

/// `object.__setattr__(obj, name, value)` for the slot at `offset` (from `slot_offset` on `obj`'s
/// exact class, which `new_instance` made it of).
pub(crate) fn put(obj: &Bound<'_, PyAny>, offset: isize, value: &Bound<'_, PyAny>) {
    unsafe {
        let slot = obj.as_ptr().cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>();
        let old = *slot;
        ffi::Py_INCREF(value.as_ptr());
        *slot = value.as_ptr();
        ffi::Py_XDECREF(old);
    }
}

/// A captured table version: what its rows events need.
struct Captured {
    schema: PyObject,
    plan: Py<RowsPlan>,
    key: Vec<usize>,
}

/// A registered TABLE_MAP: the value the Python decoder's `by_id` holds for it, and, when the
/// table is captured, how to read its rows (None: another table, whose rows are skipped).
struct Table {
    by_id_value: PyObject,
    captured: Option<Captured>,
}

/// Python classes and interned names the records are made of.
#[pyclass(module = "headwater_native")]
pub struct EventLoop {
    event_cls: Py<PyType>,
    position_cls: Py<PyType>,
    gtid_cls: Py<PyType>,
    end_cls: Py<PyType>,
    state_cls: Py<PyType>,
    context_cls: Py<PyType>,
    ops: [PyObject; 3], // create, update, delete
    by_id: Py<PyDict>,
    tables: HashMap<Vec<u8>, Table>,
    names: Vec<Py<PyString>>,
    slots: Slots,
}

/// The GTID state tracking of gtid_tracking.GtidTracker: (server_id, state, here), or none.
type Tracking<'py> = Option<(Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>)>;

/// One transaction taken: where the next event is, its records, its Gtid, the tracking after it.
struct Taken<'py> {
    next: usize,
    gtid: Bound<'py, PyAny>,
    tracking: Tracking<'py>,
    foreign: Option<Foreign<'py>>,
}

/// A transaction that touched no captured table: `(tx_pos, next_offset, ts_ms)`, for the Python
/// decoder's throttled progress (StreamDecoder._end), which depends on the clock and the socket.
type Foreign<'py> = (Bound<'py, PyAny>, u32, Bound<'py, PyAny>);

fn u16_at(d: &[u8], p: usize) -> Option<usize> {
    Some(usize::from(*d.get(p)?) | usize::from(*d.get(p + 1)?) << 8)
}

fn u32_at(d: &[u8], p: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(p..p + 4)?.try_into().ok()?))
}

fn uint_at(d: &[u8], p: usize, n: usize) -> Option<u64> {
    let b = d.get(p..p + n)?;
    Some(b.iter().rev().fold(0u64, |v, x| v << 8 | u64::from(*x)))
}

/// Every one of `ncols` bits set in the bitmap at `p` (a full row image).
fn full_bitmap(d: &[u8], p: usize, ncols: usize) -> Option<bool> {
    let bytes = d.get(p..p + ncols.div_ceil(8))?;
    Some(bytes.iter().enumerate().all(|(i, b)| {
        let bits = (ncols - i * 8).min(8);
        let want = if bits == 8 { 0xFF } else { (1u8 << bits) - 1 };
        b & want == want
    }))
}

/// The statement of a QUERY event, as bytes (binlog_format.query_text's, undecoded).
fn query_of(d: &[u8]) -> Option<&[u8]> {
    let p = HEADER_LEN;
    let db_len = usize::from(*d.get(p + 8)?);
    let status_len = u16_at(d, p + 11)?;
    let start = p + 13 + status_len + db_len + 1;
    d.get(start..)
}

impl EventLoop {
    /// A row's Position: `tx_pos.at_row(row)`'s slots.
    fn position_at<'py>(
        &self,
        py: Python<'py>,
        tx: &[Bound<'py, PyAny>; 6],
        key: &[Bound<'py, PyAny>],
        row: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let index = row.into_pyobject(py)?.into_any();
        let position = new_instance(py, &self.position_cls)?;
        put(&position, self.slots.pos[0], &tx[0]);
        put(&position, self.slots.pos[1], &tx[1]);
        put(&position, self.slots.pos[2], &tx[2]);
        put(&position, self.slots.pos[3], &index);
        put(&position, self.slots.pos[4], &tx[4]);
        put(&position, self.slots.pos[5], &tx[5]);
        put(&position, self.slots.pos[6], tuple_replacing(py, key, 3, &index)?.as_any());
        untrack_frozen(&position);
        Ok(position)
    }

    #[allow(clippy::too_many_arguments)]
    fn change<'py>(
        &self,
        py: Python<'py>,
        op: usize,
        schema: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        before: &Bound<'py, PyAny>,
        after: &Bound<'py, PyAny>,
        position: &Bound<'py, PyAny>,
        ts_ms: &Bound<'py, PyAny>,
        tx_id: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let event = new_instance(py, &self.event_cls)?;
        put(&event, self.slots.event[0], self.ops[op].bind(py));
        put(&event, self.slots.event[1], schema);
        put(&event, self.slots.event[2], key);
        put(&event, self.slots.event[3], before);
        put(&event, self.slots.event[4], after);
        put(&event, self.slots.event[5], position);
        put(&event, self.slots.event[6], ts_ms);
        put(&event, self.slots.event[7], tx_id);
        untrack_frozen(&event);
        Ok(event)
    }

    fn key_of<'py>(
        py: Python<'py>,
        indexes: &[usize],
        image: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if indexes.is_empty() {
            return Ok(py.None().into_bound(py));
        }
        Ok(picked(py, image, indexes)?.into_any())
    }

    /// The transaction whose GTID event is `events[start]`, whole, its records appended to `out`;
    /// None (and `out` as it was) when the Python path must decode it.
    #[allow(clippy::too_many_arguments)]
    fn transaction<'py>(
        &self,
        py: Python<'py>,
        events: &Bound<'py, PyList>,
        start: usize,
        file_pos: &Bound<'py, PyAny>,
        file_key: &[Bound<'py, PyAny>],
        tracking: &Tracking<'py>,
        out: &mut Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Taken<'py>>> {
        let n = &self.names;
        let first = events.get_item(start)?;
        let Ok(ev) = first.downcast::<PyBytes>() else {
            return Ok(None); // another buffer type: the Python path reads it
        };
        let ev = ev.as_bytes();
        if ev.len() < HEADER_LEN + 13 || ev[4] != GTID {
            return Ok(None);
        }
        let ts = u32_at(ev, 0).unwrap_or(0);
        let server_id = u32_at(ev, 5).unwrap_or(0);
        let size = u32_at(ev, 9).unwrap_or(0);
        let log_pos = u32_at(ev, 13).unwrap_or(0);
        let seq = uint_at(ev, HEADER_LEN, 8).unwrap_or(0);
        let domain = u32_at(ev, HEADER_LEN + 8).unwrap_or(0);
        let flags = ev[HEADER_LEN + 12];
        // standalone (DDL) and non-transactional groups (savepoint rollbacks) are the Python path's
        if flags & FL_STANDALONE != 0 || flags & FL_TRANSACTIONAL == 0 || log_pos < size {
            return Ok(None);
        }
        let offset = log_pos - size;
        if !self.small(events, start + 1)? {
            return Ok(None);
        }
        // the GTID state after this transaction: only the one-domain case (gtid_tracking.begin's)
        let context = match tracking {
            None => py.None().into_bound(py),
            Some((_, _, here)) => here.clone(),
        };
        let domain_obj = domain.into_pyobject(py)?.into_any();
        let server_obj = server_id.into_pyobject(py)?.into_any();
        let seq_obj = seq.into_pyobject(py)?.into_any();
        let offset_obj = offset.into_pyobject(py)?.into_any();
        let zero = 0u32.into_pyobject(py)?.into_any();
        let gtid = new_instance(py, &self.gtid_cls)?;
        put(&gtid, self.slots.gtid[0], &domain_obj);
        put(&gtid, self.slots.gtid[1], &server_obj);
        put(&gtid, self.slots.gtid[2], &seq_obj);
        let after = match tracking {
            None => None,
            Some((tracked_server, state, _)) => {
                let gtids = state.getattr(&n[N_GTIDS])?;
                let gtids = gtids.downcast::<PyTuple>()?;
                if gtids.len() != 1 {
                    return Ok(None);
                }
                let dom: u32 = gtids.get_item(0)?.getattr(&n[N_DOMAIN])?.extract()?;
                if dom != domain {
                    return Ok(None);
                }
                let new_state = new_instance(py, &self.state_cls)?;
                put(&new_state, self.slots.state[0], PyTuple::new(py, [&gtid])?.as_any());
                let here = new_instance(py, &self.context_cls)?;
                put(&here, self.slots.context[0], tracked_server);
                put(&here, self.slots.context[1], &new_state);
                Some((tracked_server.clone(), new_state, here))
            }
        };
        let file = file_pos.getattr(&n[N_FILE])?;
        let era = file_pos.getattr(&n[N_ERA])?;
        let pkey: Vec<Bound<'py, PyAny>> = vec![
            file_key[0].clone(),
            file_key[1].clone(),
            offset_obj.clone(),
            zero.clone(),
            domain_obj,
            server_obj,
            seq_obj,
            file_key[7].clone(),
        ];
        let tx: [Bound<'py, PyAny>; 6] = [gtid.clone(), file, offset_obj, zero, era, context];
        let tx_id = PyString::new(py, &format!("{domain}-{server_id}-{seq}")).into_any();
        let ts_ms = (u64::from(ts) * 1000).into_pyobject(py)?.into_any();
        let mark = out.len();
        let mut tables: Vec<(u64, &Table)> = Vec::with_capacity(2);
        let mut row: u64 = 0;
        let mut last: Option<Bound<'py, PyAny>> = None;
        let none = py.None().into_bound(py);
        let mut i = start + 1;
        let count = events.len();
        let give_back = |out: &mut Vec<Bound<'py, PyAny>>| -> PyResult<Option<Taken<'py>>> {
            out.truncate(mark);
            Ok(None)
        };
        while i < count {
            let item = events.get_item(i)?;
            let Ok(ev) = item.downcast::<PyBytes>() else {
                return give_back(out);
            };
            let ev = ev.as_bytes();
            i += 1;
            if ev.len() < HEADER_LEN {
                return give_back(out);
            }
            let type_code = ev[4];
            match type_code {
                TABLE_MAP => {
                    let body = &ev[HEADER_LEN..];
                    let Some(table) = self.tables.get(body) else {
                        return give_back(out); // compiled (and registered) by the Python path
                    };
                    let Some(table_id) = uint_at(body, 0, 6) else {
                        return give_back(out);
                    };
                    self.by_id
                        .bind(py)
                        .set_item(table_id, table.by_id_value.bind(py))?;
                    tables.retain(|(id, _)| *id != table_id);
                    tables.push((table_id, table));
                }
                23..=25 | 30..=32 => {
                    let Some(table_id) = uint_at(ev, HEADER_LEN, 6) else {
                        return give_back(out);
                    };
                    let Some((_, table)) = tables.iter().find(|(id, _)| *id == table_id) else {
                        return give_back(out); // a table map of an earlier transaction
                    };
                    let Some(captured) = &table.captured else {
                        continue; // another table's rows
                    };
                    let mut pos = HEADER_LEN + 8;
                    if type_code >= 30 {
                        let Some(extra) = u16_at(ev, pos) else {
                            return give_back(out);
                        };
                        pos += extra;
                    }
                    let ncols = match ev.get(pos) {
                        Some(&c) if c < 251 => usize::from(c),
                        _ => return give_back(out),
                    };
                    pos += 1;
                    let is_update = type_code == 24 || type_code == 31;
                    let nbytes = ncols.div_ceil(8);
                    let mut full = full_bitmap(ev, pos, ncols);
                    pos += nbytes;
                    if is_update {
                        full = full.zip(full_bitmap(ev, pos, ncols)).map(|(a, b)| a && b);
                        pos += nbytes;
                    }
                    if full != Some(true) {
                        return give_back(out); // the Python path names the partial image
                    }
                    let plan = captured.plan.get();
                    let schema = captured.schema.bind(py);
                    let decoded = if is_update {
                        plan.decode_updates(py, ev, pos, ev.len())
                    } else {
                        plan.decode_rows(py, ev, pos, ev.len())
                    };
                    let Ok(decoded) = decoded else {
                        return give_back(out); // the Python path raises the same error
                    };
                    let changes = if is_update { 2 } else { 1 } * decoded.len() as u64;
                    if row + changes > MAX_ROW {
                        return give_back(out);
                    }
                    for item in decoded.iter() {
                        if is_update {
                            let pair = item.downcast::<PyTuple>()?;
                            let before = pair.get_item(0)?;
                            let after = pair.get_item(1)?;
                            let before = before.downcast::<PyTuple>()?;
                            let after = after.downcast::<PyTuple>()?;
                            let key = Self::key_of(py, &captured.key, after)?;
                            let old_key = Self::key_of(py, &captured.key, before)?;
                            if key.eq(&old_key)? {
                                let position = self.position_at(py, &tx, &pkey, row)?;
                                row += 1;
                                out.push(self.change(
                                    py, 1, schema, &key, before, after, &position, &ts_ms, &tx_id,
                                )?);
                                last = Some(position);
                                continue;
                            }
                            // the key changed: a delete of the old key, then a create of the new
                            let position = self.position_at(py, &tx, &pkey, row)?;
                            row += 1;
                            out.push(self.change(
                                py, 2, schema, &old_key, before, &none, &position, &ts_ms, &tx_id,
                            )?);
                            let position = self.position_at(py, &tx, &pkey, row)?;
                            row += 1;
                            out.push(self.change(
                                py, 0, schema, &key, &none, after, &position, &ts_ms, &tx_id,
                            )?);
                            last = Some(position);
                        } else {
                            let image = item.downcast::<PyTuple>()?;
                            let key = Self::key_of(py, &captured.key, image)?;
                            let position = self.position_at(py, &tx, &pkey, row)?;
                            row += 1;
                            let (op, before, after) = if type_code == 23 || type_code == 30 {
                                (0, &none, image.as_any())
                            } else {
                                (2, image.as_any(), &none)
                            };
                            out.push(self.change(
                                py, op, schema, &key, before, after, &position, &ts_ms, &tx_id,
                            )?);
                            last = Some(position);
                        }
                    }
                }
                XID | QUERY => {
                    if type_code == QUERY {
                        match query_of(ev) {
                            Some(b"BEGIN") => continue,
                            Some(b"COMMIT") => {}
                            _ => return give_back(out), // DDL, savepoints, statements
                        }
                    }
                    let next_offset = u32_at(ev, 13).unwrap_or(0);
                    let Some(last) = last else {
                        // no captured row: its end is the Python decoder's throttled progress
                        let tx_pos = self.position_at(py, &tx, &pkey, 0)?;
                        return Ok(Some(Taken {
                            next: i,
                            gtid,
                            tracking: after,
                            foreign: Some((tx_pos, next_offset, ts_ms)),
                        }));
                    };
                    let end = new_instance(py, &self.end_cls)?;
                    put(&end, self.slots.end[0], &tx_id);
                    put(&end, self.slots.end[1], &last);
                    put(&end, self.slots.end[2], &row.into_pyobject(py)?.into_any());
                    put(&end, self.slots.end[3], &ts_ms);
                    put(&end, self.slots.end[4], &next_offset.into_pyobject(py)?.into_any());
                    out.push(end);
                    return Ok(Some(Taken {
                        next: i,
                        gtid,
                        tracking: after,
                        foreign: None,
                    }));
                }
                HEARTBEAT | ANNOTATE_ROWS => {} // inside a transaction: no boundary, nothing to emit
                _ => return give_back(out),
            }
        }
        give_back(out) // the list ends inside the transaction
    }
}

impl EventLoop {
    /// The transaction from `events[from]` on has at most MAX_ROWS_BYTES of rows events. A larger
    /// one goes to the Python path, which hands its changes over a rows event at a time: built
    /// here, a 1000-row transaction's ~5000 objects all lived until its end, and the cyclic GC
    /// traversed them again and again (bulk decode 1.62-1.77 against 1.22-1.35 us a row; the
    /// same with the GC off).
    fn small(&self, events: &Bound<'_, PyList>, from: usize) -> PyResult<bool> {
        let mut bytes = 0usize;
        for j in from..events.len() {
            let item = events.get_item(j)?;
            let Ok(ev) = item.downcast::<PyBytes>() else {
                return Ok(true); // the loop gives it back
            };
            match ev.as_bytes().get(4) {
                Some(23..=25 | 30..=32) => {
                    bytes += ev.as_bytes().len();
                    if bytes > MAX_ROWS_BYTES {
                        return Ok(false);
                    }
                }
                Some(&XID) | Some(&GTID) | None => break,
                _ => {}
            }
        }
        Ok(true)
    }
}

#[pymethods]
impl EventLoop {
    /// `ops`: (Op.CREATE, Op.UPDATE, Op.DELETE); `by_id`: the Python decoder's table-id dict,
    /// which each TABLE_MAP taken here updates as the Python path does.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        event_cls: Py<PyType>,
        position_cls: Py<PyType>,
        gtid_cls: Py<PyType>,
        end_cls: Py<PyType>,
        state_cls: Py<PyType>,
        context_cls: Py<PyType>,
        ops: (PyObject, PyObject, PyObject),
        by_id: Py<PyDict>,
    ) -> PyResult<Self> {
        let names = NAMES
            .iter()
            .map(|n| PyString::intern(py, n).unbind())
            .collect();
        let slots = Slots {
            pos: offsets(
                position_cls.bind(py),
                POSITION_SLOTS,
            )?,
            event: offsets(
                event_cls.bind(py),
                EVENT_SLOTS,
            )?,
            gtid: offsets(gtid_cls.bind(py), ["domain", "server_id", "seq"])?,
            end: offsets(
                end_cls.bind(py),
                [
                    "transaction_id",
                    "last_position",
                    "row_count",
                    "source_ts_ms",
                    "next_offset",
                ],
            )?,
            state: offsets(state_cls.bind(py), ["gtids"])?,
            context: offsets(context_cls.bind(py), ["server_id", "gtid_state"])?,
        };
        Ok(EventLoop {
            event_cls,
            position_cls,
            gtid_cls,
            end_cls,
            state_cls,
            context_cls,
            ops: [ops.0, ops.1, ops.2],
            by_id,
            tables: HashMap::new(),
            names,
            slots,
        })
    }

    /// A TABLE_MAP body the Python decoder compiled: `by_id_value` is what it stores in `by_id`;
    /// `schema`, `plan` and `key_indexes` read a captured table's rows (`plan` None: not captured).
    #[pyo3(signature = (body, by_id_value, schema, plan, key_indexes))]
    fn register(
        &mut self,
        body: Vec<u8>,
        by_id_value: PyObject,
        schema: PyObject,
        plan: Option<Py<RowsPlan>>,
        key_indexes: Vec<usize>,
    ) {
        let captured = plan.map(|plan| Captured {
            schema,
            plan,
            key: key_indexes,
        });
        self.tables.insert(
            body,
            Table {
                by_id_value,
                captured,
            },
        );
    }

    /// The whole transactions from `events[start]` on: `(stop, records, gtid, tracking, foreign)`,
    /// where `stop` is the first event not taken (the Python path's), `gtid` the last
    /// transaction's Gtid (None if none was taken) and `tracking` the `(server_id, state, here)`
    /// after it. It stops after a transaction that touched no captured table, whose
    /// `(tx_pos, next_offset, ts_ms)` is `foreign` (else None). `file_pos`: a Position in the
    /// current binlog file (None: take nothing); `tracking` None: positions carry no context.
    #[pyo3(signature = (events, start, file_pos, tracking))]
    #[allow(clippy::type_complexity)]
    fn run<'py>(
        &self,
        py: Python<'py>,
        events: &Bound<'py, PyList>,
        start: usize,
        file_pos: Option<&Bound<'py, PyAny>>,
        tracking: Tracking<'py>,
    ) -> PyResult<(
        usize,
        Bound<'py, PyList>,
        Option<Bound<'py, PyAny>>,
        Tracking<'py>,
        Option<Foreign<'py>>,
    )> {
        let mut out: Vec<Bound<'py, PyAny>> = Vec::new();
        let mut i = start;
        let mut gtid = None;
        let mut tracking = tracking;
        let mut foreign = None;
        if let Some(file_pos) = file_pos {
            let key = file_pos.getattr(&self.names[N_KEY_TUPLE])?;
            let key = key.downcast::<PyTuple>()?;
            if key.len() == 8 {
                let file_key: Vec<Bound<'py, PyAny>> = key.iter().collect();
                while i < events.len() {
                    let taken =
                        self.transaction(py, events, i, file_pos, &file_key, &tracking, &mut out)?;
                    let Some(taken) = taken else { break };
                    i = taken.next;
                    gtid = Some(taken.gtid);
                    if tracking.is_some() {
                        tracking = taken.tracking;
                    }
                    if taken.foreign.is_some() {
                        foreign = taken.foreign;
                        break;
                    }
                }
            }
        }
        Ok((i, PyList::new(py, out)?, gtid, tracking, foreign))
    }
}

/// The binlog events of the complete protocol packets at the start of `data` (the dump's read
/// buffer): `([event, ...], used)`, each event as `BinlogConnection.events` yields it (the OK byte
/// and the last `cut` checksum bytes removed), `used` the bytes they took. It stops before a packet
/// that is not all in `data`, one that is not an event (end of stream, error) and one of an event
/// longer than a packet: the connection reads those one by one, as before.
#[pyfunction]
pub fn split_packets<'py>(
    py: Python<'py>,
    data: &[u8],
    cut: usize,
) -> PyResult<(Bound<'py, PyList>, usize)> {
    const MAX_PACKET: usize = 0xFF_FFFF;
    let out = PyList::empty(py);
    let mut pos = 0usize;
    while pos + 4 <= data.len() {
        let size = usize::from(data[pos])
            | usize::from(data[pos + 1]) << 8
            | usize::from(data[pos + 2]) << 16;
        let end = pos + 4 + size;
        if size == MAX_PACKET || size < 1 + cut || end > data.len() || data[pos + 4] != 0 {
            break;
        }
        out.append(PyBytes::new(py, &data[pos + 5..end - cut]))?;
        pos = end;
    }
    Ok((out, pos))
}
