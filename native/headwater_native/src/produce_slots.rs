//! A change event's fields read straight from its `__slots__`, not through `getattr`.
//!
//! `MessageMaker` reads nine fields of every change (the event's, its position's) to make its
//! message. Through `getattr` each is a type lookup, a descriptor call and a member read: about 8%
//! of the capture writer thread on 1000-row statements (perf, benchmarks/results/latest.md
//! "capbulk"). `ChangeEvent` and `Position` are slots dataclasses, so each field is a member
//! descriptor holding the offset of the field's pointer in the object; reading that pointer is
//! what the descriptor itself does (`PyMember_GetOne`, `Py_T_OBJECT_EX`). The offsets are taken
//! from the class's descriptors, and used only on objects whose type is exactly that class.

use pyo3::exceptions::PyAttributeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyType};

/// The slot offsets of some fields of one class.
pub(crate) struct Slots {
    cls: Py<PyType>,
    offsets: Vec<Option<ffi::Py_ssize_t>>,
}

impl Slots {
    /// The offsets of `names` (None where a name is not a `__slots__` object member of `cls`;
    /// `get` reads those through `getattr`).
    pub(crate) fn of(cls: &Bound<'_, PyType>, names: &[&str]) -> PyResult<Self> {
        let mut offsets = Vec::with_capacity(names.len());
        for name in names {
            let offset = match cls.getattr(*name) {
                Ok(descr) if descr.get_type().name()?.to_str()? == "member_descriptor" => {
                    // SAFETY: a member_descriptor is a PyMemberDescrObject whose d_member points to
                    // its PyMemberDef (pyo3-ffi types the pointer as PyGetSetDef*)
                    let def = unsafe {
                        let md = descr.as_ptr() as *const ffi::PyMemberDescrObject;
                        &*((*md).d_member as *const ffi::PyMemberDef)
                    };
                    (def.type_code == ffi::Py_T_OBJECT_EX).then_some(def.offset)
                }
                _ => None,
            };
            offsets.push(offset);
        }
        Ok(Slots {
            cls: cls.clone().unbind(),
            offsets,
        })
    }

    /// Field `i` of `obj`: from its slot when `obj`'s type is exactly the class, else `getattr`.
    #[inline]
    pub(crate) fn get<'py>(
        &self,
        obj: &Bound<'py, PyAny>,
        i: usize,
        name: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = obj.py();
        match self.offsets[i] {
            Some(offset) if obj.get_type().is(self.cls.bind(py)) => {
                // SAFETY: obj is an instance of exactly `cls`, whose member at `offset` is an
                // object pointer (Py_T_OBJECT_EX), NULL only while unset
                let p = unsafe {
                    *((obj.as_ptr() as *const u8).offset(offset) as *const *mut ffi::PyObject)
                };
                if p.is_null() {
                    return Err(PyAttributeError::new_err(format!("field {name} is not set")));
                }
                // SAFETY: p is a live object owned by obj, which outlives this borrow's use
                Ok(unsafe { Bound::from_borrowed_ptr(py, p) })
            }
            _ => obj.getattr(name),
        }
    }
}
