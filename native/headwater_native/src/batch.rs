//! The Kafka messages of a run of change events, built in one call: the writer's per-row Python
//! (`KafkaStreamWriter._write_change`, `EnvelopeEncoder.encode_change`, `_value_bytes`, `_produce`)
//! was most of the capture daemon's writer thread, and it shares the GIL with the reading thread.
//!
//! `MessageMaker.messages` walks `records` from `start` while each record is a change that the
//! writer's cached template (one transaction, one table version, one source timestamp, snapshot read
//! or not) describes, and returns where it stopped and the `{"key", "value"}` dicts that
//! `Producer.produce_batch` takes. Each value is what `RowPlan.change` gives for that event, each
//! key what `TableCodec.key_bytes` gives. It stops, leaving the record to the writer's per-row
//! path, at anything else: another class, table version, transaction, timestamp or position prefix,
//! a truncate, a keyed table's event without its key, or a value over `max_value` (the per-row path
//! names it in MessageTooLarge). So a record it does not take is never guessed at here.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use crate::produce_direct::PackedMessages;
use crate::produce_slots::Slots;
use crate::txn_runs::RunOut;
use crate::RowPlan;

// indexes into `names`
pub(crate) const SCHEMA: usize = 0;
pub(crate) const SOURCE_TS_MS: usize = 1;
pub(crate) const TRANSACTION_ID: usize = 2;
pub(crate) const OP: usize = 3;
pub(crate) const POSITION: usize = 4;
pub(crate) const KEY_TUPLE: usize = 5;
pub(crate) const KEY: usize = 6;
pub(crate) const BEFORE: usize = 7;
pub(crate) const AFTER: usize = 8;
pub(crate) const MSG_KEY: usize = 9;
pub(crate) const MSG_VALUE: usize = 10;
pub(crate) const ROW_COUNT: usize = 11;
pub(crate) const FILE: usize = 12;
const NAMES: [&str; 13] = [
    "schema",
    "source_ts_ms",
    "transaction_id",
    "op",
    "position",
    "_key",
    "key",
    "before",
    "after",
    "key",
    "value",
    "row_count",
    "file",
];

/// Builds the messages of change-event runs for one writer (its event class, ops and limits).
#[pyclass(frozen, module = "headwater_native")]
pub struct MessageMaker {
    pub(crate) event_cls: Py<PyType>,
    /// (op member, its value as bytes) for c, u, d, r: the ops a run may hold
    pub(crate) ops: Vec<(Py<PyAny>, Vec<u8>)>,
    pub(crate) read_op: Py<PyAny>,
    pub(crate) delete_op: Py<PyAny>,
    pub(crate) tombstones: bool,
    pub(crate) max_value: usize,
    pub(crate) names: Vec<Py<PyString>>,
    /// the event class's fields by `names` index, read from their slots (produce_slots.rs)
    event_slots: Slots,
    /// the same for the position class, when given
    position_slots: Option<Slots>,
}

impl MessageMaker {
    /// Field `i` (a `names` index) of a change event.
    #[inline]
    pub(crate) fn field<'py>(&self, record: &Bound<'py, PyAny>, i: usize) -> PyResult<Bound<'py, PyAny>> {
        let name = self.names[i].bind(record.py());
        self.event_slots.get(record, i, name)
    }

    /// Field `i` (a `names` index) of a change event's position.
    #[inline]
    pub(crate) fn position_field<'py>(
        &self,
        position: &Bound<'py, PyAny>,
        i: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let name = self.names[i].bind(position.py());
        match &self.position_slots {
            Some(slots) => slots.get(position, i, name),
            None => position.getattr(name),
        }
    }
}

pub(crate) fn same(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<bool> {
    // identity first: the decoder shares one object per transaction for these fields
    if a.is(b) {
        return Ok(true);
    }
    a.eq(b)
}

#[pymethods]
impl MessageMaker {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (event_cls, ops, read_op, delete_op, tombstones, max_value, position_cls=None))]
    fn new(
        py: Python<'_>,
        event_cls: Py<PyType>,
        ops: Vec<(Py<PyAny>, Vec<u8>)>,
        read_op: Py<PyAny>,
        delete_op: Py<PyAny>,
        tombstones: bool,
        max_value: usize,
        position_cls: Option<Py<PyType>>,
    ) -> PyResult<Self> {
        let names = NAMES
            .iter()
            .map(|n| PyString::intern(py, n).unbind())
            .collect();
        let event_slots = Slots::of(event_cls.bind(py), &NAMES)?;
        let position_slots = match position_cls {
            Some(cls) => Some(Slots::of(cls.bind(py), &NAMES)?),
            None => None,
        };
        Ok(MessageMaker {
            event_cls,
            ops,
            read_op,
            delete_op,
            tombstones,
            max_value,
            names,
            event_slots,
            position_slots,
        })
    }

    /// `(stop, messages)`: the messages of `records[start:stop]`, each record a change of the
    /// template (`schema` object, `ts`, `transaction_id`, snapshot `read` or not, position `_key`
    /// equal to `pos_key` but for the row). `key_plan` None: the table has no primary key and
    /// the row image is the key, as in `TableCodec.key_bytes`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (records, start, plan, key_plan, schema, ts, transaction_id, read, pos_key, source_head, position_head, position_tail, ts_ms))]
    fn messages<'py>(
        &self,
        py: Python<'py>,
        records: &Bound<'py, PyList>,
        start: usize,
        plan: &Bound<'py, RowPlan>,
        key_plan: Option<&Bound<'py, RowPlan>>,
        schema: &Bound<'py, PyAny>,
        ts: &Bound<'py, PyAny>,
        transaction_id: &Bound<'py, PyAny>,
        read: bool,
        pos_key: &Bound<'py, PyTuple>,
        source_head: &[u8],
        position_head: &[u8],
        position_tail: &[u8],
        ts_ms: i64,
    ) -> PyResult<(usize, Bound<'py, PyList>)> {
        let n = &self.names;
        let plan = plan.get();
        let key_plan = key_plan.map(|k| k.get());
        let event_cls = self.event_cls.bind(py);
        let read_op = self.read_op.bind(py);
        let delete_op = self.delete_op.bind(py);
        if pos_key.len() != 8 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "Position._key must have 8 fields",
            ));
        }
        let template: Vec<Bound<'py, PyAny>> = pos_key.iter().collect();
        let ts_tail = format!("\",\"ts_ms\":{ts_ms},\"transaction\":null}}");
        let out = PyList::empty(py);
        let mut i = start;
        let count = records.len();
        let mut value: Vec<u8> = Vec::with_capacity(1024);
        let mut key: Vec<u8> = Vec::with_capacity(128);
        'rows: while i < count {
            let record = records.get_item(i)?;
            if !record.get_type().is(event_cls) {
                break;
            }
            if !self.field(&record, SCHEMA)?.is(schema)
                || !same(&self.field(&record, SOURCE_TS_MS)?, ts)?
                || !same(&self.field(&record, TRANSACTION_ID)?, transaction_id)?
            {
                break;
            }
            let op = self.field(&record, OP)?;
            if op.is(read_op) != read {
                break;
            }
            let Some(op_bytes) = self
                .ops
                .iter()
                .find(|(member, _)| op.is(member.bind(py)))
                .map(|(_, b)| b)
            else {
                break; // a truncate (or anything new): the per-row path
            };
            let position = self.field(&record, POSITION)?;
            let pk_obj = self.position_field(&position, KEY_TUPLE)?;
            let pk = pk_obj.downcast::<PyTuple>()?;
            if pk.len() != 8 {
                break;
            }
            for (j, expected) in template.iter().enumerate() {
                if j != 3 && !same(&pk.get_item(j)?, expected)? {
                    break 'rows;
                }
            }
            let Ok(row) = pk.get_item(3)?.extract::<u64>() else {
                break;
            };
            if row > 9_999_999_999 {
                break; // the per-row path raises the error that names it
            }
            value.clear();
            let Some(has_key) =
                key_and_images(py, &record, self, plan, key_plan, &mut key, &mut value)?
            else {
                break; // rare: the per-row path finds the key in the image
            };
            value.extend_from_slice(source_head);
            let digits = row.to_string();
            value.extend_from_slice(digits.as_bytes());
            value.extend_from_slice(b",\"position\":\"");
            value.extend_from_slice(position_head);
            value.resize(value.len() + 10 - digits.len(), b'0');
            value.extend_from_slice(digits.as_bytes());
            value.extend_from_slice(position_tail);
            value.extend_from_slice(b"\"},\"op\":\"");
            value.extend_from_slice(op_bytes);
            value.extend_from_slice(ts_tail.as_bytes());
            if value.len() > self.max_value {
                break; // the per-row path raises MessageTooLarge, naming table, key and size
            }
            push_messages(py, n, &out, has_key, &key, &value, self.tombstones && op.is(delete_op))?;
            i += 1;
        }
        Ok((i, out))
    }

    /// The messages of a run of small source transactions of one table version, their
    /// transaction ends included: `records[start:stop]` holds only changes whose `schema` is
    /// `schema` and TransactionEnds (`end_cls`), and ends after the end that brings the ends'
    /// `row_count` to `room`, or before anything else (another table version, class, a truncate,
    /// a value over the limit, text this file cannot write as orjson does). Each change's value is
    /// what `EnvelopeEncoder.encode_change` gives: the first change of a (transaction, table
    /// version, timestamp, snapshot read or not) with the whole `source` block of `_source(...,
    /// whole=True)`, the next ones in the template's key order (`schema_version` before `row`).
    /// `continues`: `records[start]` follows the change the writer encoded last (same template).
    /// `parts`: the source block's fixed bytes, built by envelope.py once per table version.
    ///
    /// Returns `(stop, messages, changes, ends, end_rows, last_change)`; `last_change` is the
    /// index of the last change taken (`start` - 1 when none).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (records, start, end_cls, plan, key_plan, schema, parts, continues, room, ts_ms, repair_prefix, lsn_base))]
    fn transactions<'py>(
        &self,
        py: Python<'py>,
        records: &Bound<'py, PyList>,
        start: usize,
        end_cls: &Bound<'py, PyType>,
        plan: &Bound<'py, RowPlan>,
        key_plan: Option<&Bound<'py, RowPlan>>,
        schema: &Bound<'py, PyAny>,
        parts: &Bound<'py, PyTuple>,
        continues: bool,
        room: u64,
        ts_ms: i64,
        repair_prefix: &str,
        lsn_base: &str,
    ) -> PyResult<RunOut<'py, Bound<'py, PyList>>> {
        let n = &self.names;
        let mut out = DictMessages {
            py,
            names: n,
            out: PyList::empty(py),
            value: Vec::with_capacity(1024),
        };
        let (stop, changes, ends, end_rows, last) = crate::txn_runs::transactions(
            self, py, records, start, end_cls, plan, key_plan, schema, parts, continues, room,
            ts_ms, repair_prefix, lsn_base, &mut out,
        )?;
        Ok((stop, out.out, changes, ends, end_rows, last))
    }

    /// What `transactions` does, the messages in one `PackedMessages` buffer instead of a dict of
    /// two bytes objects each, for `PackedMessages.produce` (produce_direct.rs); `partition`:
    /// the one they go to, -1 for the producer's partitioner (`PackedMessages.for_partition`).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (records, start, end_cls, plan, key_plan, schema, parts, continues, room, ts_ms, repair_prefix, lsn_base, partition=-1))]
    fn transactions_packed<'py>(
        &self,
        py: Python<'py>,
        records: &Bound<'py, PyList>,
        start: usize,
        end_cls: &Bound<'py, PyType>,
        plan: &Bound<'py, RowPlan>,
        key_plan: Option<&Bound<'py, RowPlan>>,
        schema: &Bound<'py, PyAny>,
        parts: &Bound<'py, PyTuple>,
        continues: bool,
        room: u64,
        ts_ms: i64,
        repair_prefix: &str,
        lsn_base: &str,
        partition: i32,
    ) -> PyResult<RunOut<'py, PackedMessages>> {
        let mut out = PackedMessages::for_partition(partition)?;
        let (stop, changes, ends, end_rows, last) = crate::txn_runs::transactions(
            self, py, records, start, end_cls, plan, key_plan, schema, parts, continues, room,
            ts_ms, repair_prefix, lsn_base, &mut out,
        )?;
        Ok((stop, out, changes, ends, end_rows, last))
    }
}

/// A change's Kafka key into `key` (as `TableCodec.key_bytes` makes it) and the start of its value,
/// `{"before":…,"after":…,"source":`, appended to `value`; shared by `messages` and `transactions`.
/// `Ok(None)`: the record has no key object although its table has a primary key (the per-row
/// path takes it); else `Ok(Some(has_key))`, false for a keyless row without an image.
pub(crate) fn key_and_images<'py>(
    py: Python<'py>,
    record: &Bound<'py, PyAny>,
    maker: &MessageMaker,
    plan: &RowPlan,
    key_plan: Option<&RowPlan>,
    key: &mut Vec<u8>,
    value: &mut Vec<u8>,
) -> PyResult<Option<bool>> {
    let before_obj = maker.field(record, BEFORE)?;
    let after_obj = maker.field(record, AFTER)?;
    let before = if before_obj.is_none() {
        None
    } else {
        Some(before_obj.downcast::<PyTuple>()?)
    };
    let after = if after_obj.is_none() {
        None
    } else {
        Some(after_obj.downcast::<PyTuple>()?)
    };
    key.clear();
    let has_key = match key_plan {
        Some(kp) => {
            let k = maker.field(record, KEY)?;
            if k.is_none() {
                return Ok(None);
            }
            kp.write(py, k.downcast::<PyTuple>()?, key)?;
            true
        }
        None => match after.or(before) {
            Some(image) => {
                plan.write(py, image, key)?;
                true
            }
            None => false,
        },
    };
    value.extend_from_slice(b"{\"before\":");
    plan.write_image(py, before, value)?;
    value.extend_from_slice(b",\"after\":");
    plan.write_image(py, after, value)?;
    value.extend_from_slice(b",\"source\":");
    Ok(Some(has_key))
}

/// `transactions`' messages as dicts: each value written in `value`, then copied into its bytes.
struct DictMessages<'a, 'py> {
    py: Python<'py>,
    names: &'a [Py<PyString>],
    out: Bound<'py, PyList>,
    value: Vec<u8>,
}

impl crate::txn_runs::RunMessages for DictMessages<'_, '_> {
    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.value
    }

    fn finish(&mut self, mark: usize, has_key: bool, key: &[u8], tombstone: bool) -> PyResult<()> {
        let done = push_messages(self.py, self.names, &self.out, has_key, key, &self.value[mark..], tombstone);
        self.value.truncate(mark);
        done
    }
}

/// A change's message (and, for a delete when tombstones are on, its tombstone) appended to `out`,
/// as `{"key": ..., "value": ...}` dicts; shared by `messages` and `transactions`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push_messages<'py>(
    py: Python<'py>,
    n: &[Py<PyString>],
    out: &Bound<'py, PyList>,
    has_key: bool,
    key: &[u8],
    value: &[u8],
    tombstone: bool,
) -> PyResult<()> {
    let key_obj: Bound<'py, PyAny> = if has_key {
        PyBytes::new(py, key).into_any()
    } else {
        py.None().into_bound(py)
    };
    let message = PyDict::new(py);
    message.set_item(&n[MSG_KEY], &key_obj)?;
    message.set_item(&n[MSG_VALUE], PyBytes::new(py, value))?;
    out.append(message)?;
    if tombstone {
        let tombstone = PyDict::new(py);
        tombstone.set_item(&n[MSG_KEY], &key_obj)?;
        tombstone.set_item(&n[MSG_VALUE], py.None())?;
        out.append(tombstone)?;
    }
    Ok(())
}
