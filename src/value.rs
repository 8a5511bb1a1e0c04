//! TEMPORARY STUB: replaced by the real value module.
use std::collections::BTreeMap;
/// Value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Value {
    /// n
    Null,
    /// b
    Bool(bool),
    /// i
    Int(i64),
    /// f
    Float(f64),
    /// s
    String(String),
    /// b
    Bytes(Vec<u8>),
    /// l
    List(Vec<Value>),
    /// m
    Map(BTreeMap<String, Value>),
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.into())
    }
}
/// e
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct ValueError;
/// t
pub fn to_value<T: serde::Serialize + ?Sized>(_v: &T) -> Result<Value, ValueError> {
    Err(ValueError)
}
/// f
pub fn from_value<T: serde::de::DeserializeOwned>(_v: Value) -> Result<T, ValueError> {
    Err(ValueError)
}
