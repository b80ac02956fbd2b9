//! `cdc sink`'s table messages read straight from librdkafka into runs (the `message_runs` format),
//! without a confluent_kafka `Message` object per message.
//!
//! Why: `Consumer.consume()` makes a Python object per message (a new str for its topic, bytes for
//! its key and value, a copy of its headers) that `message_runs` then asks five methods of and
//! drops: 1.5-2 us of the polling thread's ~3 us CPU per change (benchmarks/consume_poll_bench.py).
//!
//! How, without touching the consumer's group logic: `RawConsumer` owns a librdkafka queue of its
//! own, and each table partition's fetch queue is forwarded to it (`rd_kafka_queue_forward`, which
//! librdkafka keeps across fetch starts: RD_KAFKA_Q_F_FWD_APP) BEFORE the partition is assigned,
//! so none of its messages ever reaches the consumer queue. That queue then only carries the
//! group's events (rebalances, commits, consumer-level errors), which confluent_kafka's own
//! `consume()` keeps serving, with its callbacks and its thread state, on every poll. A fetch
//! queue holds only FETCH ops (messages, already filtered by librdkafka: aborted transactions
//! under read_committed and control records never get there), CONSUMER_ERR ops (end of partition,
//! offset-reset and fetch errors, returned as messages) and version barriers: serving it runs no
//! application callback, so it is read here with the GIL released. Outdated messages of a
//! partition unassigned meanwhile are dropped by the same `rd_kafka_q_serve_rkmessages` version
//! check that confluent_kafka's consume relies on.
//!
//! The `rd_kafka_t` is read from confluent_kafka's private `Handle` (as `produce_direct` does: the
//! first field after `PyObject_HEAD`), re-read on every call (NULL once closed) and trusted only if
//! `rd_kafka_opaque(rk)` is the Consumer itself. `cdc.stream.consume_direct` resolves the
//! librdkafka functions and falls back to `consume()` when anything is not as expected.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};

use crate::packed_values::PackedValues;
use crate::rdkafka_abi::{client_rk, OpaqueFn, RdKafkaMessage};

type QueueNewFn = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type QueueGetPartitionFn = unsafe extern "C" fn(*mut c_void, *const c_char, i32) -> *mut c_void;
type QueueGetConsumerFn = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type QueueForwardFn = unsafe extern "C" fn(*mut c_void, *mut c_void);
type QueueDestroyFn = unsafe extern "C" fn(*mut c_void);
type QueueLengthFn = unsafe extern "C" fn(*mut c_void) -> usize;
type ConsumeBatchQueueFn = unsafe extern "C" fn(*mut c_void, c_int, *mut *mut RdKafkaMessage, usize) -> isize;
type MessageDestroyFn = unsafe extern "C" fn(*mut RdKafkaMessage);
type TopicNameFn = unsafe extern "C" fn(*const c_void) -> *const c_char;
type Err2StrFn = unsafe extern "C" fn(c_int) -> *const c_char;

/// The librdkafka functions, resolved by the caller in the library confluent_kafka loaded.
struct Functions {
    opaque: OpaqueFn,
    queue_new: QueueNewFn,
    queue_get_partition: QueueGetPartitionFn,
    queue_get_consumer: QueueGetConsumerFn,
    queue_forward: QueueForwardFn,
    queue_destroy: QueueDestroyFn,
    queue_length: QueueLengthFn,
    consume_batch_queue: ConsumeBatchQueueFn,
    message_destroy: MessageDestroyFn,
    topic_name: TopicNameFn,
    err2str: Err2StrFn,
}

/// The queue pointers, behind a mutex (`RawConsumer` is frozen and shared with other threads).
struct Queues {
    own: *mut c_void,      // ours: every forwarded partition's messages (NULL once closed)
    consumer: *mut c_void, // a reference to the consumer queue: only its length is read
}

// SAFETY: librdkafka's queues are thread-safe; the pointers are only used under the mutex
unsafe impl Send for Queues {}

/// A topic handle's address, its name, and the name as a str.
type TopicName = (usize, Vec<u8>, Py<PyString>);

/// How long one wait on our queue lasts before the consumer queue is looked at again: an event
/// of the group waiting there (a rebalance) ends the wait so that the caller serves it.
const WAIT_SLICE_MS: u64 = 10;

/// A confluent_kafka `Consumer`'s table partitions read through a queue of our own; see the module
/// comment. Use: `forward(topic, partition)` for each table partition before it is assigned,
/// `consume(n, timeout_s)` for the messages, `close()` before the Consumer closes.
#[pyclass(frozen, module = "headwater_native")]
pub struct RawConsumer {
    consumer: Py<PyAny>,
    f: Functions,
    queues: std::sync::Mutex<Queues>,
    topics: std::sync::Mutex<Vec<TopicName>>,
}

impl RawConsumer {
    /// The consumer's `rd_kafka_t`, re-read each time (NULL once it is closed) and checked.
    fn rk(&self) -> PyResult<*mut c_void> {
        client_rk(&self.consumer, self.f.opaque, "consumer")
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The topic's name as a str, made once per topic handle (compared by name, not only by
    /// address: a handle's memory may be reused for another topic).
    fn topic<'py>(&self, py: Python<'py>, rkt: *mut c_void) -> Bound<'py, PyString> {
        // SAFETY: rkt is the topic handle of a message librdkafka returned and we still hold
        let name = unsafe { CStr::from_ptr((self.f.topic_name)(rkt)) }.to_bytes();
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, s)) = topics.iter().find(|(at, n, _)| *at == rkt as usize && n == name) {
            return s.bind(py).clone();
        }
        let s = PyString::new(py, &String::from_utf8_lossy(name));
        topics.retain(|(at, _, _)| *at != rkt as usize);
        topics.push((rkt as usize, name.to_vec(), s.clone().unbind()));
        s
    }
}

#[pymethods]
impl RawConsumer {
    /// `consumer`: a confluent_kafka Consumer (subscribed, nothing assigned yet); `functions`: the
    /// addresses of rd_kafka_opaque, _queue_new, _queue_get_partition, _queue_get_consumer,
    /// _queue_forward, _queue_destroy, _queue_length, _consume_batch_queue, _message_destroy,
    /// _topic_name and _err2str in the librdkafka that confluent_kafka loaded.
    #[new]
    fn new(consumer: Py<PyAny>, functions: Vec<usize>) -> PyResult<Self> {
        if functions.len() != 11 || functions.contains(&0) {
            return Err(PyValueError::new_err("eleven non-zero librdkafka function addresses expected"));
        }
        let a = &functions;
        // SAFETY: the caller resolved these symbols in librdkafka, whose signatures they have
        let f = unsafe {
            Functions {
                opaque: std::mem::transmute::<usize, OpaqueFn>(a[0]),
                queue_new: std::mem::transmute::<usize, QueueNewFn>(a[1]),
                queue_get_partition: std::mem::transmute::<usize, QueueGetPartitionFn>(a[2]),
                queue_get_consumer: std::mem::transmute::<usize, QueueGetConsumerFn>(a[3]),
                queue_forward: std::mem::transmute::<usize, QueueForwardFn>(a[4]),
                queue_destroy: std::mem::transmute::<usize, QueueDestroyFn>(a[5]),
                queue_length: std::mem::transmute::<usize, QueueLengthFn>(a[6]),
                consume_batch_queue: std::mem::transmute::<usize, ConsumeBatchQueueFn>(a[7]),
                message_destroy: std::mem::transmute::<usize, MessageDestroyFn>(a[8]),
                topic_name: std::mem::transmute::<usize, TopicNameFn>(a[9]),
                err2str: std::mem::transmute::<usize, Err2StrFn>(a[10]),
            }
        };
        let made = RawConsumer {
            consumer,
            f,
            queues: std::sync::Mutex::new(Queues { own: std::ptr::null_mut(), consumer: std::ptr::null_mut() }),
            topics: std::sync::Mutex::new(Vec::new()),
        };
        let rk = made.rk()?;
        // SAFETY: rk is the live consumer's
        let (own, consumer_q) = unsafe { ((made.f.queue_new)(rk), (made.f.queue_get_consumer)(rk)) };
        if own.is_null() || consumer_q.is_null() {
            // SAFETY: each non-null one is a queue reference of ours
            unsafe {
                if !own.is_null() {
                    (made.f.queue_destroy)(own);
                }
                if !consumer_q.is_null() {
                    (made.f.queue_destroy)(consumer_q);
                }
            }
            return Err(PyRuntimeError::new_err("librdkafka gave no queue (not a group consumer?)"));
        }
        *made.queues() = Queues { own, consumer: consumer_q };
        Ok(made)
    }

    /// Send the partition's messages to our queue from now on (call it before the partition is
    /// assigned); False if librdkafka has no queue for it (its messages stay on the consumer's).
    fn forward(&self, py: Python<'_>, topic: &str, partition: i32) -> PyResult<bool> {
        let rk = self.rk()? as usize;
        let name = CString::new(topic).map_err(|_| PyValueError::new_err("topic name with a NUL"))?;
        // without the GIL: the queues' mutex may be held by a consume waiting without it
        let forwarded = py.allow_threads(|| {
            let queues = self.queues();
            if queues.own.is_null() {
                return None;
            }
            // SAFETY: rk is live; the partition queue reference is released right after forwarding
            unsafe {
                let q = (self.f.queue_get_partition)(rk as *mut c_void, name.as_ptr(), partition);
                if q.is_null() {
                    return Some(false);
                }
                (self.f.queue_forward)(q, queues.own);
                (self.f.queue_destroy)(q);
            }
            Some(true)
        });
        forwarded.ok_or_else(|| PyRuntimeError::new_err("RawConsumer is closed"))
    }

    /// Up to `max_messages` from our queue, waiting up to `timeout_s` for the first (less if an
    /// event of the group is waiting on the consumer queue), as `message_runs` gives a batch's:
    /// `[(topic, partition, [value, ...], [next_offset, ...]) | (topic, partition, (code, reason)), ...]`
    /// (a 3-tuple is a message that carries an error, e.g. an end of partition), and how many
    /// messages (errors included) were read.
    fn consume<'py>(
        &self,
        py: Python<'py>,
        max_messages: usize,
        timeout_s: f64,
    ) -> PyResult<(Bound<'py, PyList>, usize)> {
        self.rk()?;
        let queues = self.queues();
        if queues.own.is_null() {
            return Err(PyRuntimeError::new_err("RawConsumer is closed"));
        }
        let (own, consumer_q) = (queues.own as usize, queues.consumer as usize);
        // addresses (usize: the wait below runs without the GIL, and raw pointers are not Send)
        let mut messages: Vec<usize> = vec![0; max_messages.max(1)];
        let f = &self.f;
        // the wait runs no Python callback (see the module comment): the GIL is released
        let (n, collected) = py.allow_threads(|| {
            let (own, consumer_q) = (own as *mut c_void, consumer_q as *mut c_void);
            let deadline = Instant::now() + Duration::from_secs_f64(timeout_s.max(0.0));
            let array = messages.as_mut_ptr() as *mut *mut RdKafkaMessage;
            let room = messages.len();
            // rd_kafka_consume_batch_queue waits until the batch is full or its timeout is over:
            // as the reader did with consume(), what is queued is taken at once, else the wait is
            // for the first message only (a one-message batch), then what came with it
            let got = loop {
                // SAFETY: own is our live queue (the mutex is held); array has room for `room`
                let got = unsafe { (f.consume_batch_queue)(own, 0, array, room) };
                let left = deadline.saturating_duration_since(Instant::now());
                if got != 0 || left.is_zero() {
                    break got;
                }
                let slice = left.min(Duration::from_millis(WAIT_SLICE_MS)).as_millis().max(1) as c_int;
                // SAFETY: as above, one message
                let first = unsafe { (f.consume_batch_queue)(own, slice, array, 1) };
                if first != 0 {
                    if first < 0 || room == 1 {
                        break first;
                    }
                    // SAFETY: as above, the rest of the array
                    let more = unsafe { (f.consume_batch_queue)(own, 0, array.add(1), room - 1) };
                    break 1 + more.max(0); // an error now: the next call reports it
                }
                // SAFETY: consumer_q is our reference to the consumer queue
                if unsafe { (f.queue_length)(consumer_q) } > 0 {
                    break 0;
                }
            };
            // the values copied into one buffer per run, still without the GIL
            let collected = if got > 0 { collect(f, &messages[..got as usize]) } else { Vec::new() };
            (got, collected)
        });
        if n < 0 {
            return Err(PyRuntimeError::new_err("rd_kafka_consume_batch_queue failed"));
        }
        let n = n as usize;
        let taken = &messages[..n];
        let built = self.runs(py, collected);
        for &m in taken {
            // SAFETY: each was returned by consume_batch_queue and is destroyed once
            unsafe { (f.message_destroy)(m as *mut RdKafkaMessage) };
        }
        Ok((built?, n))
    }

    /// Stop reading: our queue is destroyed (what it still holds is dropped; partitions still
    /// forwarded to it drop what they fetch). Call it before the Consumer closes.
    fn close(&self, py: Python<'_>) {
        // without the GIL: the queues' mutex may be held by a consume waiting without it
        py.allow_threads(|| self.release());
    }
}

impl RawConsumer {
    fn release(&self) {
        let mut queues = self.queues();
        // SAFETY: both are references of ours, released once
        unsafe {
            if !queues.own.is_null() {
                (self.f.queue_destroy)(queues.own);
            }
            if !queues.consumer.is_null() {
                (self.f.queue_destroy)(queues.consumer);
            }
        }
        queues.own = std::ptr::null_mut();
        queues.consumer = std::ptr::null_mut();
    }

    /// The runs as Python objects (the messages are not destroyed yet: their topic handles live).
    fn runs<'py>(&self, py: Python<'py>, collected: Vec<Run>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for run in collected {
            let topic = |rkt: usize| {
                if rkt == 0 {
                    PyString::new(py, "")
                } else {
                    self.topic(py, rkt as *mut c_void)
                }
            };
            match run {
                Run::Values { rkt, partition, data, bounds, next } => {
                    let values = Bound::new(py, PackedValues::new(data, bounds))?;
                    let offsets = PyList::new(py, next)?;
                    out.append(PyTuple::new(
                        py,
                        [topic(rkt).into_any(), partition.into_pyobject(py)?.into_any(), values.into_any(), offsets.into_any()],
                    )?)?;
                }
                Run::Error { rkt, partition, code, reason } => {
                    out.append((topic(rkt), partition, (code, reason)))?;
                }
            }
        }
        Ok(out)
    }
}

/// One partition's consecutive messages (values back to back, tombstones left out) or a message
/// that carries an error, as read from librdkafka without the GIL.
enum Run {
    Values { rkt: usize, partition: i32, data: Vec<u8>, bounds: Vec<usize>, next: Vec<i64> },
    Error { rkt: usize, partition: i32, code: c_int, reason: String },
}

/// The runs of `taken` (messages librdkafka returned, not destroyed yet): a run ends where the
/// partition changes or an error comes; a run of only tombstones is still given (the partition
/// had messages: its end mark is cleared).
fn collect(f: &Functions, taken: &[usize]) -> Vec<Run> {
    // SAFETY: each is a message librdkafka returned, not destroyed yet
    let msgs: Vec<&RdKafkaMessage> = taken.iter().map(|&m| unsafe { &*(m as *const RdKafkaMessage) }).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < msgs.len() {
        let m = msgs[i];
        if m.err != 0 {
            // rd_kafka_message_errstr: the payload holds the error's text when there is one
            let reason = if !m.payload.is_null() && m.len > 0 {
                // SAFETY: payload/len are the message's
                let bytes = unsafe { std::slice::from_raw_parts(m.payload as *const u8, m.len) };
                String::from_utf8_lossy(bytes).into_owned()
            } else {
                // SAFETY: err2str returns a static string for any code
                unsafe { CStr::from_ptr((f.err2str)(m.err)) }.to_string_lossy().into_owned()
            };
            out.push(Run::Error { rkt: m.rkt as usize, partition: m.partition, code: m.err, reason });
            i += 1;
            continue;
        }
        let end = msgs[i..]
            .iter()
            .position(|x| x.err != 0 || x.rkt != m.rkt || x.partition != m.partition)
            .map_or(msgs.len(), |k| i + k);
        let run = &msgs[i..end];
        // a tombstone (null) or an empty value: no change, as message_runs leaves them out
        let kept = || run.iter().filter(|x| !x.payload.is_null() && x.len > 0);
        let size: usize = kept().map(|x| x.len).sum();
        let count = kept().count();
        let mut data = Vec::with_capacity(size);
        let mut bounds = Vec::with_capacity(count + 1);
        let mut next = Vec::with_capacity(count);
        bounds.push(0);
        for x in kept() {
            // SAFETY: payload/len are the message's
            data.extend_from_slice(unsafe { std::slice::from_raw_parts(x.payload as *const u8, x.len) });
            bounds.push(data.len());
            next.push(x.offset + 1);
        }
        out.push(Run::Values { rkt: m.rkt as usize, partition: m.partition, data, bounds, next });
        i = end;
    }
    out
}

impl Drop for RawConsumer {
    fn drop(&mut self) {
        // the queues are released only while the consumer is open (its rk still set): after its
        // close they are gone with it, and touching them would be a use after free
        if self.rk().is_ok() {
            self.release();
        }
    }
}
