//! `message_runs`: a `Consumer.consume()` batch split into runs of one partition's messages, the
//! per-message work of `cdc sink`'s reader (`cdc.stream.kafka_reader.KafkaChangeReader.poll_chunks`)
//! done here instead of in the interpreter.
//!
//! Why: with the compiled envelope decoder, the reader's Python loop over the messages (five
//! method calls, a tuple, a dict look-up and two list appends per message) was the largest cost
//! left on `cdc sink`'s polling thread (1.0-1.6 us per message, pinned; the raw consume() and
//! `value()` of the same messages ~0.9). Here the same calls cost what a C call costs.
//!
//! The output keeps the batch's order: a message that carries an error (an end-of-partition mark,
//! or a real error) is given back as the Message itself, between the runs, so the caller handles it
//! at the same point of the sequence as before; every other message belongs to the run of its
//! (topic, partition), a run ending where the partition changes or an error comes. A run lists the
//! values of its messages (tombstones, empty or null values, left out: the delete before each
//! carried the change) and per value the offset after it; a run of only tombstones is still given
//! (it tells the caller the partition had messages).

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

/// ``[Message | (topic, partition, [value, ...], [next_offset, ...]), ...]``; see the module doc.
#[pyfunction]
pub(crate) fn message_runs<'py>(
    py: Python<'py>,
    messages: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    let error_name = intern!(py, "error");
    let topic_name = intern!(py, "topic");
    let partition_name = intern!(py, "partition");
    let value_name = intern!(py, "value");
    let offset_name = intern!(py, "offset");
    // the open run: its topic (the str object, and its text to compare by), partition, lists
    let mut topic: Option<Bound<'py, PyAny>> = None;
    let mut partition: i64 = -1;
    let mut values = PyList::empty(py);
    let mut offsets = PyList::empty(py);
    for msg in messages.iter() {
        if !msg.call_method0(error_name)?.is_none() {
            if let Some(t) = topic.take() {
                out.append(run(py, t, partition, &values, &offsets)?)?;
                values = PyList::empty(py);
                offsets = PyList::empty(py);
            }
            out.append(&msg)?;
            continue;
        }
        let this_topic = msg.call_method0(topic_name)?;
        let found = msg.call_method0(partition_name)?;
        let this_partition: i64 = if found.is_none() { 0 } else { found.extract()? };
        let same = match &topic {
            Some(t) => this_partition == partition && same_topic(t, &this_topic)?,
            None => false,
        };
        if !same {
            if let Some(t) = topic.take() {
                out.append(run(py, t, partition, &values, &offsets)?)?;
                values = PyList::empty(py);
                offsets = PyList::empty(py);
            }
            topic = Some(this_topic);
            partition = this_partition;
        }
        let value = msg.call_method0(value_name)?;
        // a tombstone (None) or an empty value: no change, as `if not value` said in Python
        let empty = match value.downcast::<PyBytes>() {
            Ok(bytes) => bytes.as_bytes().is_empty(),
            Err(_) => !value.is_truthy()?,
        };
        if empty {
            continue;
        }
        let offset = msg.call_method0(offset_name)?;
        // ``(msg.offset() or 0) + 1``: a message without an offset (None) counts as offset 0
        let next: i64 = if offset.is_none() { 1 } else { offset.extract::<i64>()? + 1 };
        values.append(value)?;
        offsets.append(next)?;
    }
    if let Some(t) = topic.take() {
        out.append(run(py, t, partition, &values, &offsets)?)?;
    }
    Ok(out)
}

fn run<'py>(
    py: Python<'py>,
    topic: Bound<'py, PyAny>,
    partition: i64,
    values: &Bound<'py, PyList>,
    offsets: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyTuple>> {
    (topic, partition, values, offsets).into_pyobject(py)
}

/// Two topic names (str, as `Message.topic()` gives them; None for none) are equal.
fn same_topic(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<bool> {
    if a.is(b) {
        return Ok(true);
    }
    match (a.downcast::<PyString>(), b.downcast::<PyString>()) {
        (Ok(x), Ok(y)) => Ok(x.to_cow()? == y.to_cow()?),
        _ => a.eq(b),
    }
}
