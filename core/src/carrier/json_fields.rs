//! Reading a JSON object field by field, for the files whose errors must name the file
//! and the key: the netboot configuration and a dist's `machine.json`. A `null` counts as
//! absent; every error names the key's path (`isoImages[0].file`, `macs[1]`) and, for a
//! wrong type, what was found. The caller adds the file to the message.

use serde_json::{Map, Value};

/// A field that is missing or wrong: its key path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FieldError {
    pub key: String,
    pub message: String,
}

/// The fields of one JSON object not taken yet, and the key path of the object.
#[derive(Debug)]
pub(super) struct Fields {
    map: Map<String, Value>,
    at: String,
}

impl Fields {
    /// The top-level object of a file; else what was found instead (`a list`…).
    pub(super) fn top(value: Value) -> Result<Fields, &'static str> {
        match value {
            Value::Object(map) => Ok(Fields { map, at: String::new() }),
            other => Err(kind(&other)),
        }
    }

    /// The path of `key` of this object.
    pub(super) fn path(&self, key: &str) -> String {
        if self.at.is_empty() { key.to_string() } else { format!("{}.{key}", self.at) }
    }

    /// An error about `key` of this object.
    pub(super) fn error(&self, key: &str, message: impl Into<String>) -> FieldError {
        FieldError { key: self.path(key), message: message.into() }
    }

    /// Takes `key` out of the object; `null` counts as absent.
    pub(super) fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    pub(super) fn string(&mut self, key: &str) -> Result<Option<String>, FieldError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(key, expected("a string", &other))),
        }
    }

    /// [`Fields::string`], where `""` is an error.
    pub(super) fn non_empty_string(&mut self, key: &str) -> Result<Option<String>, FieldError> {
        match self.string(key)? {
            Some(s) if s.is_empty() => Err(self.error(key, "must not be empty")),
            s => Ok(s),
        }
    }

    /// A list of strings; absent is empty.
    pub(super) fn strings(&mut self, key: &str) -> Result<Vec<String>, FieldError> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(v) => strings_at(&self.path(key), v),
        }
    }

    /// The object at `key`, to read its fields; `shape` describes it in the error when
    /// something else is there (`{file, label}`).
    pub(super) fn object(&mut self, key: &str, shape: &str) -> Result<Option<Fields>, FieldError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => object_at(&self.path(key), v, shape).map(Some),
        }
    }

    /// Fails naming the first key not taken: `expected` lists the known keys.
    pub(super) fn no_others(&self, expected: &str) -> Result<(), FieldError> {
        match self.map.keys().next() {
            Some(k) => Err(self.error(k, format!("unknown key (expected {expected})"))),
            None => Ok(()),
        }
    }

    /// The keys not taken, with their values.
    pub(super) fn into_rest(self) -> Map<String, Value> {
        self.map
    }
}

/// The value at the key path `at` as a list of strings.
pub(super) fn strings_at(at: &str, value: Value) -> Result<Vec<String>, FieldError> {
    let Value::Array(items) = value else {
        return Err(FieldError {
            key: at.to_string(),
            message: expected("a list of strings", &value),
        });
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s),
            other => {
                Err(FieldError { key: format!("{at}[{i}]"), message: expected("a string", &other) })
            }
        })
        .collect()
}

/// The value at the key path `at` as an object (see [`Fields::object`]).
pub(super) fn object_at(at: &str, value: Value, shape: &str) -> Result<Fields, FieldError> {
    match value {
        Value::Object(map) => Ok(Fields { map, at: at.to_string() }),
        other => Err(FieldError {
            key: at.to_string(),
            message: expected(&format!("an object {shape}"), &other),
        }),
    }
}

/// `expected <what>, found <kind of value>`.
pub(super) fn expected(what: &str, found: &Value) -> String {
    format!("expected {what}, found {}", kind(found))
}

/// What a value is, for messages.
pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_key_path_and_what_was_found() {
        let mut f =
            Fields::top(json!({"a": null, "b": 1, "c": ["x", 2], "d": {"e": [true]}, "f": ""}))
                .unwrap();
        assert_eq!(f.string("a"), Ok(None), "null is absent");
        let e = f.string("b").unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.message.as_str()),
            ("b", "expected a string, found a number")
        );
        let e = f.strings("c").unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.message.as_str()),
            ("c[1]", "expected a string, found a number")
        );
        let mut d = f.object("d", "{e}").unwrap().unwrap();
        let e = d.strings("e").unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.message.as_str()),
            ("d.e[0]", "expected a string, found a boolean")
        );
        assert_eq!(f.non_empty_string("f").unwrap_err().message, "must not be empty");
        let mut f = Fields::top(json!({"x": [], "y": 1})).unwrap();
        let e = f.object("x", "{file, label}").unwrap_err();
        assert_eq!(e.message, "expected an object {file, label}, found a list");
        let e = f.no_others("x").unwrap_err();
        assert_eq!((e.key.as_str(), e.message.as_str()), ("y", "unknown key (expected x)"));
        assert_eq!(Fields::top(json!([])).unwrap_err(), "a list");
    }
}
