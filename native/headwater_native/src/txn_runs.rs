//! `MessageMaker.transactions` (batch.rs): the messages of a run of small source transactions of
//! one table version, their TransactionEnds included, in one call. With single-row transactions
//! every change is its transaction's first, so `MessageMaker.messages` (the rows after a
//! transaction's first) never applied: each change took the writer's per-row Python path and the
//! capture loop handled each TransactionEnd in Python, about two thirds of the writer thread's time
//! on that workload (py-spy).
//!
//! Each value is what `EnvelopeEncoder.encode_change` gives: the first change of a (transaction,
//! table version, source timestamp, snapshot read or not) with the whole `source` block of
//! `_source(..., whole=True)` (`row`, `position` then `schema_version`), the next ones in the
//! template's order (`schema_version` before `row`). It stops, leaving the record to the writer's
//! per-row path, at anything it does not take: another class or table version, a truncate, a keyed
//! table's change without its key, a value over `max_value`, text with surrogates, a binlog base
//! name with a character JSON escapes (the template writes it unescaped).

use std::fmt::Write;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple, PyType};

use crate::batch::{
    key_and_images, same, MessageMaker, FILE, KEY_TUPLE, OP, POSITION, ROW_COUNT, SCHEMA,
    SOURCE_TS_MS, TRANSACTION_ID,
};
use crate::{write_str, RowPlan};

/// `(stop, messages, changes, ends, end_rows, last_change)`
pub(crate) type RunOut<'py, M> = (usize, M, usize, usize, u64, isize);

/// `(stop, changes, ends, end_rows, last_change)`; the messages went to the caller's `push`.
pub(crate) type RunCounts = (usize, usize, usize, u64, isize);

/// Where `transactions` writes a run's messages: each value is appended to `buffer()` (nothing
/// else is written to it meanwhile), then declared with its key by `finish(mark, ..)`, `mark`
/// being the buffer's length before the value. `PackedMessages` hands out its own buffer, so a
/// packed run's values are written where they stay, not copied there from a scratch buffer.
pub(crate) trait RunMessages {
    fn buffer(&mut self) -> &mut Vec<u8>;
    fn finish(&mut self, mark: usize, has_key: bool, key: &[u8], tombstone: bool) -> PyResult<()>;
}

/// A change's template: its position key but for the row, source ts, transaction id, read or not.
type Template<'py> = (
    Bound<'py, PyTuple>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    bool,
);

/// See `MessageMaker.transactions` in batch.rs and the module comment. Each change's message goes
/// to `out` (`RunMessages`): dicts for `transactions`, one buffer for `transactions_packed`
/// (produce_direct.rs).
#[allow(clippy::too_many_arguments)]
pub(crate) fn transactions<'py>(
    maker: &MessageMaker,
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
    out: &mut impl RunMessages,
) -> PyResult<RunCounts> {
    let n = &maker.names;
    let plan = plan.get();
    let key_plan = key_plan.map(|k| k.get());
    let event_cls = maker.event_cls.bind(py);
    let read_op = maker.read_op.bind(py);
    let delete_op = maker.delete_op.bind(py);
    if parts.len() != 4 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "parts: (version_head, name_to_ts, db_to_server, schema_version)",
        ));
    }
    let part = |j: usize| -> PyResult<Vec<u8>> {
        Ok(parts
            .get_item(j)?
            .downcast::<PyBytes>()?
            .as_bytes()
            .to_vec())
    };
    // {"version":"..","connector":"  |  ","name":<pipeline>,"ts_ms":  |  ,"db":..,"table":..,"server_id":
    let (version_head, name_to_ts, db_to_server, schema_version) =
        (part(0)?, part(1)?, part(2)?, part(3)?);
    let ts_tail = format!("\",\"ts_ms\":{ts_ms},\"transaction\":null}}");
    let count = records.len();
    let mut key: Vec<u8> = Vec::with_capacity(128);
    let mut head: Vec<u8> = Vec::with_capacity(256); // the source block up to "pos":<offset>
                                                     // the position text around the row's 10 digits, and the source head: kept while the template does
    let mut position_head = String::with_capacity(48);
    let mut position_tail = String::with_capacity(64);
    let mut cached = false;
    let mut last: Option<Template<'py>> = None;
    let (mut changes, mut ends, mut end_rows) = (0usize, 0usize, 0u64);
    let mut last_change: isize = start as isize - 1;
    let mut i = start;
    while i < count {
        let record = records.get_item(i)?;
        let cls = record.get_type();
        if cls.is(end_cls) {
            let rows: u64 = record.getattr(&n[ROW_COUNT])?.extract()?;
            ends += 1;
            end_rows += rows;
            i += 1;
            if end_rows >= room {
                break; // the capture loop commits here
            }
            continue;
        }
        if !cls.is(event_cls) || !maker.field(&record, SCHEMA)?.is(schema) {
            break;
        }
        let op = maker.field(&record, OP)?;
        let Some(op_bytes) = maker
            .ops
            .iter()
            .find(|(member, _)| op.is(member.bind(py)))
            .map(|(_, b)| b)
        else {
            break; // a truncate: the per-row path
        };
        let read = op.is(read_op);
        let ts = maker.field(&record, SOURCE_TS_MS)?;
        let txn = maker.field(&record, TRANSACTION_ID)?;
        let position = maker.field(&record, POSITION)?;
        let pk_obj = maker.position_field(&position, KEY_TUPLE)?;
        let pk = pk_obj.downcast_into::<PyTuple>()?;
        if pk.len() != 8 {
            break;
        }
        let field = |j: usize| pk.get_borrowed_item(j);
        let continues_template = match &last {
            None => continues,
            Some((prev, prev_ts, prev_txn, prev_read)) => {
                let mut equal = *prev_read == read && same(prev_ts, &ts)? && same(prev_txn, &txn)?;
                for j in [0usize, 1, 2, 4, 5, 6, 7] {
                    if !equal {
                        break;
                    }
                    equal = same(&*prev.get_borrowed_item(j)?, &*field(j)?)?;
                }
                equal
            }
        };
        let Ok(row) = field(3)?.extract::<u64>() else {
            break;
        };
        if row > 9_999_999_999 {
            break; // the per-row path raises the error that names it
        }
        // the template's parts (source head, position text around the row) are made again only when
        // the template changes: the rows after a transaction's first reuse them
        if !(continues_template && cached) {
            // the position's fields, as Position.to_string and EnvelopeEncoder._source read them
            let (Ok(era), Ok(file_seq), Ok(offset), Ok(domain), Ok(server), Ok(seq)) = (
                field(0)?.extract::<u64>(),
                field(1)?.extract::<u64>(),
                field(2)?.extract::<u64>(),
                field(4)?.extract::<u64>(),
                field(5)?.extract::<u64>(),
                field(6)?.extract::<u64>(),
            ) else {
                break;
            };
            let base_obj = field(7)?;
            let Ok(base) = base_obj.downcast::<PyString>() else {
                break;
            };
            let Ok(base) = base.to_str() else {
                break; // surrogates: the per-row path
            };
            if base.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
                break;
            }
            let Ok(source_ts) = ts.extract::<i64>() else {
                break;
            };
            let Ok(txn_text) = txn.downcast::<PyString>() else {
                break;
            };
            let Ok(txn_text) = txn_text.to_str() else {
                break;
            };
            let file_obj = maker.position_field(&position, FILE)?;
            let Ok(file) = file_obj.downcast::<PyString>() else {
                break;
            };
            let Ok(file) = file.to_str() else {
                break;
            };
            let lsn = base == lsn_base;
            position_head.clear();
            position_tail.clear();
            if lsn {
                let _ = write!(position_head, "pgl1:{file_seq:010X}:{offset:010X}:");
                let _ = write!(position_tail, ":{server:010}-{seq:020}");
            } else {
                if era != 0 {
                    let _ = write!(position_head, "mdb2:{era:010}:");
                } else {
                    position_head.push_str("mdb1:");
                }
                let _ = write!(position_head, "{file_seq:010}:{offset:010}:");
                let _ = write!(position_tail, ":{domain:010}-{server:010}-{seq:020}:{base}");
            }
            head.clear();
            head.extend_from_slice(&version_head);
            head.extend_from_slice(if lsn {
                &b"postgresql"[..]
            } else {
                &b"mariadb"[..]
            });
            head.extend_from_slice(&name_to_ts);
            head.extend_from_slice(source_ts.to_string().as_bytes());
            head.extend_from_slice(if txn_text.starts_with(repair_prefix) {
                &b",\"snapshot\":\"repair\""[..]
            } else if read {
                &b",\"snapshot\":\"true\""[..]
            } else {
                &b",\"snapshot\":\"false\""[..]
            });
            head.extend_from_slice(&db_to_server);
            head.extend_from_slice(server.to_string().as_bytes());
            head.extend_from_slice(b",\"gtid\":");
            write_str(txn_text, &mut head);
            head.extend_from_slice(b",\"file\":");
            write_str(file, &mut head);
            head.extend_from_slice(b",\"pos\":");
            head.extend_from_slice(offset.to_string().as_bytes());
            cached = true;
        }

        let value = out.buffer();
        let mark = value.len();
        let Some(has_key) = key_and_images(py, &record, maker, plan, key_plan, &mut key, value)?
        else {
            value.truncate(mark);
            break; // rare: the per-row path finds the key in the image
        };
        value.extend_from_slice(&head);
        // the row's digits on the stack: the text of a per-row String each was a visible share
        let mut digit_buf = [0u8; 20];
        let mut at = digit_buf.len();
        let mut left = row;
        loop {
            at -= 1;
            digit_buf[at] = b'0' + (left % 10) as u8;
            left /= 10;
            if left == 0 {
                break;
            }
        }
        let digits = &digit_buf[at..];
        let position_text = |value: &mut Vec<u8>| {
            value.extend_from_slice(position_head.as_bytes());
            value.resize(value.len() + 10 - digits.len(), b'0');
            value.extend_from_slice(digits);
            value.extend_from_slice(position_tail.as_bytes());
        };
        if continues_template {
            value.extend_from_slice(b",\"schema_version\":");
            value.extend_from_slice(&schema_version);
            value.extend_from_slice(b",\"row\":");
            value.extend_from_slice(digits);
            value.extend_from_slice(b",\"position\":\"");
            position_text(value);
            value.extend_from_slice(b"\"}");
        } else {
            value.extend_from_slice(b",\"row\":");
            value.extend_from_slice(digits);
            value.extend_from_slice(b",\"position\":\"");
            position_text(value);
            value.extend_from_slice(b"\",\"schema_version\":");
            value.extend_from_slice(&schema_version);
            value.extend_from_slice(b"}");
        }
        value.extend_from_slice(b",\"op\":\"");
        value.extend_from_slice(op_bytes);
        value.extend_from_slice(ts_tail.as_bytes());
        if value.len() - mark > maker.max_value {
            value.truncate(mark);
            break; // the per-row path raises MessageTooLarge, naming table, key and size
        }
        out.finish(mark, has_key, &key, maker.tombstones && op.is(delete_op))?;
        last = Some((pk, ts, txn, read));
        changes += 1;
        last_change = i as isize;
        i += 1;
    }
    Ok((i, changes, ends, end_rows, last_change))
}
