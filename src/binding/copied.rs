//! Numbers and bytes handed to JS as copies in memory the JS engine owns.
//!
//! `Float64Array::new(vec)` and `Buffer::from(vec)` lend JS the Rust allocation, with a finalizer
//! that frees it once the object dies. The hot path hands JS a few such objects per lock cycle,
//! and running their finalizers became most of the young-generation GC's work: 8–10 ms pauses
//! every few thousand cycles in the uncontended bench. Copying the few hundred bytes instead
//! costs far less than one finalizer.

use napi::bindgen_prelude::{
    BufferSlice, Float64ArraySlice, Result, ToNapiValue, TypeName, ValueType,
};
use napi::{sys, Env};

/// Completion numbers, arriving in JS as a `Float64Array`.
pub struct CopiedNumbers(pub Vec<f64>);

/// Bytes for the wire's socket, arriving in JS as a `Buffer`.
pub struct CopiedBytes(pub Vec<u8>);

impl ToNapiValue for CopiedNumbers {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let array = Float64ArraySlice::copy_from(&Env::from_raw(env), &val.0)?;
        unsafe { ToNapiValue::to_napi_value(env, array) }
    }
}

impl TypeName for CopiedNumbers {
    fn type_name() -> &'static str {
        "Float64Array"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ToNapiValue for CopiedBytes {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let buffer = BufferSlice::copy_from(&Env::from_raw(env), &val.0)?;
        unsafe { ToNapiValue::to_napi_value(env, &buffer) }
    }
}

impl TypeName for CopiedBytes {
    fn type_name() -> &'static str {
        "Buffer"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}
