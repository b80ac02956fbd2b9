//! What `produce_direct` and `consume_direct` share of librdkafka's C ABI, and how both find a
//! confluent_kafka client's `rd_kafka_t`.

use std::ffi::{c_int, c_void};

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;

/// `rd_kafka_message_t` (rdkafka.h): what librdkafka returns from a consume, and reads (writing
/// `err`) in a produce batch.
#[repr(C)]
pub(crate) struct RdKafkaMessage {
    pub(crate) err: c_int,
    pub(crate) rkt: *mut c_void,
    pub(crate) partition: i32,
    pub(crate) payload: *mut c_void,
    pub(crate) len: usize,
    pub(crate) key: *mut c_void,
    pub(crate) key_len: usize,
    pub(crate) offset: i64,
    pub(crate) private: *mut c_void,
}

/// `rd_kafka_opaque`: confluent_kafka sets a client's opaque to the Python client object itself.
pub(crate) type OpaqueFn = unsafe extern "C" fn(*const c_void) -> *mut c_void;

/// A confluent_kafka client's `rd_kafka_t`, read from its private `Handle` struct (the first field
/// after `PyObject_HEAD`), re-read on every call (NULL once the client is closed) and trusted only if
/// `rd_kafka_opaque(rk)` is the client itself. `what` names the client in errors ("producer").
pub(crate) fn client_rk(client: &Py<PyAny>, opaque: OpaqueFn, what: &str) -> PyResult<*mut c_void> {
    // SAFETY: `client` is a live confluent_kafka client of the checked layout (the Python side
    // checks its type and release before making the object that holds it)
    let rk = unsafe {
        let at = (client.as_ptr() as *const u8).add(std::mem::size_of::<ffi::PyObject>());
        *(at as *const *mut c_void)
    };
    if rk.is_null() {
        return Err(PyRuntimeError::new_err(format!(
            "the Kafka {what} is closed"
        )));
    }
    // SAFETY: a non-null rk of a live client is its rd_kafka_t
    if unsafe { opaque(rk) } != client.as_ptr() as *mut c_void {
        return Err(PyRuntimeError::new_err(format!(
            "the Kafka {what}'s librdkafka handle is not where headwater_native looks for it"
        )));
    }
    Ok(rk)
}
