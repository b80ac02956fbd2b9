//! A run's Kafka messages in one buffer, handed to librdkafka's `rd_kafka_produce_batch` without a
//! Python object per message.
//!
//! Through `Producer.produce_batch` each message of the 1000-row capture path was a dict of two
//! bytes objects that confluent_kafka then parsed (six `PyDict_GetItemString`s, each making a str),
//! a per-message callback state, and a delivery report that took the GIL back for every message
//! although the writer only wants errors: about a third of the writer thread's time (py-spy,
//! benchmarks/results/latest.md "capbulk"). Here `MessageMaker.transactions_packed` writes every
//! key and value of a run into one `PackedMessages` buffer, and `PackedMessages.produce` gives
//! librdkafka pointers into it (RD_KAFKA_MSG_F_COPY: librdkafka copies each message, as
//! confluent_kafka asks it to), with the same topic handle, unassigned partition (the producer's
//! partitioner, as `produce_batch` does) and no per-message opaque.
//!
//! No opaque means confluent_kafka's delivery callback returns at once for these messages
//! (`dr_msg_cb`: `if (!msgstate) return;`), so a failed delivery is not seen by the writer's
//! `on_delivery`; librdkafka counts it in the transaction instead (`txn_dr_fails`) and fails
//! `commit_transaction` with an abortable error, which the writer turns into an abort and a
//! StreamUnavailable, so nothing of that transaction is committed.
//!
//! `RawProducer` finds the `rd_kafka_t` of a confluent_kafka `Producer`: the first field after
//! `PyObject_HEAD` of its C struct (`Handle` in confluent_kafka.h, unchanged since 0.9), read on
//! every call because `close()` sets it to NULL. It is trusted only if librdkafka answers
//! `rd_kafka_opaque(rk)` with the Producer object itself (confluent_kafka sets the opaque to its
//! Handle); `cdc.stream.raw_produce` resolves the four librdkafka functions from the library the
//! process loaded, and falls back to `produce_batch` whenever any of this does not hold.

use std::ffi::{c_char, c_int, c_void, CString};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use crate::rdkafka_abi::{client_rk, OpaqueFn, RdKafkaMessage};

const RD_KAFKA_PARTITION_UA: i32 = -1;
const RD_KAFKA_MSG_F_COPY: c_int = 0x2;
/// RD_KAFKA_RESP_ERR__FAIL: the messages taken were not a prefix of the batch (never seen)
const ERR_FAIL: i32 = -196;

type TopicNewFn = unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_void) -> *mut c_void;
type TopicDestroyFn = unsafe extern "C" fn(*mut c_void);
type ProduceBatchFn = unsafe extern "C" fn(*mut c_void, i32, c_int, *mut RdKafkaMessage, c_int) -> c_int;

/// One message of a `PackedMessages`: offsets into its buffer; a length of -1 is a null.
#[derive(Clone, Copy)]
struct Span {
    key_at: usize,
    key_len: isize,
    value_at: usize,
    value_len: isize,
}

/// The keys and values of a run of messages, in order, in one buffer, and the partition they go
/// to: RD_KAFKA_PARTITION_UA (the producer's partitioner picks one per key) unless the writer knows
/// the topic has one partition. Then `produce` names partition 0 and librdkafka skips its
/// partitioner: a crc32 of every key (consistent_random) and the topic's lock per message, ~3% of
/// the capture writer thread on 1000-row statements (perf, benchmarks/results/latest.md "capcpu",
/// session 8); every key lands in partition 0 either way.
#[pyclass(frozen, module = "headwater_native")]
pub struct PackedMessages {
    buf: Vec<u8>,
    spans: Vec<Span>,
    partition: i32,
}

impl Default for PackedMessages {
    fn default() -> Self {
        PackedMessages {
            buf: Vec::new(),
            spans: Vec::new(),
            partition: RD_KAFKA_PARTITION_UA,
        }
    }
}

impl PackedMessages {
    /// No message yet, for `partition` (-1: the producer's partitioner; else 0, a one-partition
    /// topic's only partition).
    pub(crate) fn for_partition(partition: i32) -> PyResult<Self> {
        if partition != RD_KAFKA_PARTITION_UA && partition != 0 {
            return Err(PyValueError::new_err(format!(
                "partition {partition}: only -1 (the partitioner) or 0 (one-partition topic)"
            )));
        }
        Ok(PackedMessages {
            partition,
            ..Default::default()
        })
    }

    fn part<'py>(&self, py: Python<'py>, at: usize, len: isize) -> Bound<'py, PyAny> {
        if len < 0 {
            py.None().into_bound(py)
        } else {
            PyBytes::new(py, &self.buf[at..at + len as usize]).into_any()
        }
    }
}

/// A packed run's values are written straight into `buf`; each key follows its value.
impl crate::txn_runs::RunMessages for PackedMessages {
    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// The value `buf[mark..]` and its key (None when `has_key` is false) are a message; for a
    /// delete with tombstones, the tombstone (same key, null value) follows it.
    fn finish(&mut self, mark: usize, has_key: bool, key: &[u8], tombstone: bool) -> PyResult<()> {
        let value_len = (self.buf.len() - mark) as isize;
        let key_at = self.buf.len();
        let key_len = if has_key {
            self.buf.extend_from_slice(key);
            key.len() as isize
        } else {
            -1
        };
        self.spans.push(Span {
            key_at,
            key_len,
            value_at: mark,
            value_len,
        });
        if tombstone {
            self.spans.push(Span {
                key_at,
                key_len,
                value_at: mark,
                value_len: -1,
            });
        }
        Ok(())
    }
}

#[pymethods]
impl PackedMessages {
    fn __len__(&self) -> usize {
        self.spans.len()
    }

    /// The partition `produce` names: -1 for the producer's partitioner.
    #[getter]
    fn partition(&self) -> i32 {
        self.partition
    }

    /// `[(key, value), ...]` from `start` on: what `produce` hands librdkafka, as bytes (or None).
    #[pyo3(signature = (start=0))]
    fn pairs<'py>(&self, py: Python<'py>, start: usize) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for s in self.spans.iter().skip(start) {
            out.append((self.part(py, s.key_at, s.key_len), self.part(py, s.value_at, s.value_len)))?;
        }
        Ok(out)
    }

    /// `{"key", "value"}` dicts from `start` on, as `Producer.produce_batch` takes them (the
    /// writer's path when `RawProducer` is not available).
    #[pyo3(signature = (start=0))]
    fn dicts<'py>(&self, py: Python<'py>, start: usize) -> PyResult<Bound<'py, PyList>> {
        let key_name = PyString::intern(py, "key");
        let value_name = PyString::intern(py, "value");
        let out = PyList::empty(py);
        for s in self.spans.iter().skip(start) {
            let d = PyDict::new(py);
            d.set_item(&key_name, self.part(py, s.key_at, s.key_len))?;
            d.set_item(&value_name, self.part(py, s.value_at, s.value_len))?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// Enqueue the messages from `start` on into `topic` through `producer` in one
    /// `rd_kafka_produce_batch` call; `(taken, error)`: how many were enqueued (a prefix: librdkafka
    /// refuses every message after a full queue's first refusal) and the librdkafka error code of
    /// the first refused one (0 when all were taken).
    fn produce(&self, producer: &RawProducer, topic: &str, start: usize) -> PyResult<(usize, i32)> {
        let rest = &self.spans[start.min(self.spans.len())..];
        if rest.is_empty() {
            return Ok((0, 0));
        }
        let rk = producer.rk()?;
        let topic = CString::new(topic).map_err(|_| PyValueError::new_err("topic name with a NUL"))?;
        let base = self.buf.as_ptr() as *mut u8;
        let mut messages: Vec<RdKafkaMessage> = rest
            .iter()
            .map(|s| RdKafkaMessage {
                err: 0,
                rkt: std::ptr::null_mut(),
                partition: self.partition,
                // SAFETY: offsets and lengths were written by `push` within `buf`
                payload: if s.value_len < 0 {
                    std::ptr::null_mut()
                } else {
                    unsafe { base.add(s.value_at) as *mut c_void }
                },
                len: s.value_len.max(0) as usize,
                key: if s.key_len < 0 {
                    std::ptr::null_mut()
                } else {
                    unsafe { base.add(s.key_at) as *mut c_void }
                },
                key_len: s.key_len.max(0) as usize,
                offset: 0,
                private: std::ptr::null_mut(),
            })
            .collect();
        let count = c_int::try_from(messages.len())
            .map_err(|_| PyValueError::new_err("too many messages for one batch"))?;
        // SAFETY: rk is the live producer's (checked by `rk`); the topic handle is released below;
        // librdkafka copies each payload and key (F_COPY) before returning, and only writes `err`.
        let taken = unsafe {
            let rkt = (producer.topic_new)(rk, topic.as_ptr(), std::ptr::null_mut());
            if rkt.is_null() {
                return Err(PyValueError::new_err(format!(
                    "librdkafka refused the topic name {:?}",
                    topic
                )));
            }
            let taken = (producer.produce_batch)(
                rkt,
                self.partition,
                RD_KAFKA_MSG_F_COPY,
                messages.as_mut_ptr(),
                count,
            );
            (producer.topic_destroy)(rkt);
            taken.max(0) as usize
        };
        if taken == messages.len() {
            return Ok((taken, 0));
        }
        let first = messages.iter().position(|m| m.err != 0).unwrap_or(taken);
        if first != taken || messages[first..].iter().any(|m| m.err == 0) {
            return Ok((taken, ERR_FAIL)); // not a prefix: order would be lost
        }
        Ok((taken, messages[first].err))
    }
}

/// A confluent_kafka `Producer`'s librdkafka handle and the librdkafka functions to produce with;
/// see the module comment for how it is found and checked.
#[pyclass(frozen, module = "headwater_native")]
pub struct RawProducer {
    producer: Py<PyAny>,
    opaque: OpaqueFn,
    topic_new: TopicNewFn,
    topic_destroy: TopicDestroyFn,
    produce_batch: ProduceBatchFn,
}

impl RawProducer {
    /// The producer's `rd_kafka_t`, re-read each time (NULL once it is closed) and checked.
    fn rk(&self) -> PyResult<*mut c_void> {
        client_rk(&self.producer, self.opaque, "producer")
    }
}

#[pymethods]
impl RawProducer {
    /// `producer`: a confluent_kafka Producer; the others: the addresses of `rd_kafka_opaque`,
    /// `rd_kafka_topic_new`, `rd_kafka_topic_destroy` and `rd_kafka_produce_batch` in the
    /// librdkafka that confluent_kafka loaded.
    #[new]
    fn new(
        producer: Py<PyAny>,
        opaque: usize,
        topic_new: usize,
        topic_destroy: usize,
        produce_batch: usize,
    ) -> PyResult<Self> {
        if [opaque, topic_new, topic_destroy, produce_batch].contains(&0) {
            return Err(PyValueError::new_err("a librdkafka function address is 0"));
        }
        // SAFETY: the caller resolved these symbols in librdkafka, whose signatures they have
        let made = unsafe {
            RawProducer {
                producer,
                opaque: std::mem::transmute::<usize, OpaqueFn>(opaque),
                topic_new: std::mem::transmute::<usize, TopicNewFn>(topic_new),
                topic_destroy: std::mem::transmute::<usize, TopicDestroyFn>(topic_destroy),
                produce_batch: std::mem::transmute::<usize, ProduceBatchFn>(produce_batch),
            }
        };
        made.rk()?;
        Ok(made)
    }
}
