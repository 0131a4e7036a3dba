//! Structured outcomes: the JSON Schema an agent gives with `place_call` (`outcome_schema`) and the check of what the
//! voice model passes to `end_call` against it.
//!
//! [`OutcomeSchema::parse`] refuses, when the call is placed, a schema that is not a JSON object, is larger than
//! [`MAX_OUTCOME_SCHEMA_BYTES`], is not a valid JSON Schema (checked against its meta-schema), or refers to another
//! document (`$ref` to a URL or a file: nothing is ever fetched). [`OutcomeSchema::check`] validates an outcome and
//! returns readable errors (`/party_size: "four" is not of type "integer"`) that go back to the model as the
//! `end_call` function's output, so it can correct itself.
//!
//! Validation uses the `jsonschema` crate (<https://docs.rs/jsonschema>): the schema's own `$schema` picks the
//! draft (2020-12 when it names none), `format` is asserted (`date-time`, `email`, ...), and `pattern` runs on the
//! linear-time `regex` engine, so no pattern can make a check take exponential time.

use std::fmt;

use serde_json::Value;

/// The largest `outcome_schema` accepted, in bytes of compact JSON (16 KiB).
pub const MAX_OUTCOME_SCHEMA_BYTES: usize = 16 * 1024;

/// How many validation errors one answer to the model lists at most (the rest are counted).
pub const MAX_REPORTED_ERRORS: usize = 10;

/// How many invalid outcomes the model is sent back to correct; after that, `end_call` ends the call anyway and the
/// structured outcome stays empty (the last attempt is kept as text in `outcome`).
pub const MAX_OUTCOME_REJECTIONS: u32 = 3;

/// A checked, compiled outcome schema. Cheap to share behind an `Arc`.
pub struct OutcomeSchema {
    /// The schema as the agent gave it (sent to the model as `end_call`'s `outcome` parameter).
    schema: Value,
    /// The compiled validator.
    validator: jsonschema::Validator,
}

impl fmt::Debug for OutcomeSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutcomeSchema")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PartialEq for OutcomeSchema {
    fn eq(&self, other: &Self) -> bool {
        self.schema == other.schema
    }
}

/// Why an `outcome_schema` was refused; the message names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutcomeSchemaError {
    /// Not a JSON object (`true`, a string, an array, ...).
    #[error(
        "outcome_schema must be a JSON Schema object, e.g. {{\"type\":\"object\",\"properties\":{{...}}}}"
    )]
    NotAnObject,
    /// Larger than [`MAX_OUTCOME_SCHEMA_BYTES`].
    #[error("outcome_schema is {0} bytes; at most {MAX_OUTCOME_SCHEMA_BYTES} bytes are accepted")]
    TooLarge(usize),
    /// Not a valid JSON Schema, or refers to another document.
    #[error("outcome_schema is not a valid JSON Schema: {0}")]
    Invalid(String),
}

impl OutcomeSchema {
    /// Checks and compiles `schema`.
    ///
    /// # Errors
    ///
    /// [`OutcomeSchemaError`]: not an object, larger than [`MAX_OUTCOME_SCHEMA_BYTES`], invalid against its
    /// meta-schema, or a reference that cannot be resolved inside the schema itself.
    pub fn parse(schema: Value) -> Result<Self, OutcomeSchemaError> {
        if !schema.is_object() {
            return Err(OutcomeSchemaError::NotAnObject);
        }
        let size_bytes = schema.to_string().len();
        if size_bytes > MAX_OUTCOME_SCHEMA_BYTES {
            return Err(OutcomeSchemaError::TooLarge(size_bytes));
        }
        if let Err(error) = jsonschema::meta::validate(&schema) {
            return Err(OutcomeSchemaError::Invalid(describe(&error)));
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&schema)
            .map_err(|error| OutcomeSchemaError::Invalid(describe(&error)))?;
        Ok(OutcomeSchema { schema, validator })
    }

    /// The schema as given.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Checks `outcome` against the schema.
    ///
    /// # Errors
    ///
    /// The validation errors, one line each (`/party_size: "four" is not of type "integer"`; the path is a JSON
    /// Pointer into the outcome, empty for the outcome itself), at most [`MAX_REPORTED_ERRORS`] of them followed by a
    /// count of the rest.
    pub fn check(&self, outcome: &Value) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        let mut total = 0_usize;
        for error in self.validator.iter_errors(outcome) {
            total += 1;
            if errors.len() < MAX_REPORTED_ERRORS {
                errors.push(describe(&error));
            }
        }
        if total > errors.len() {
            errors.push(format!("... and {} more", total - errors.len()));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// One validation error as a line: its instance path (when not the root), then the message.
fn describe(error: &jsonschema::ValidationError<'_>) -> String {
    let path = error.instance_path().to_string();
    if path.is_empty() {
        error.to_string()
    } else {
        format!("{path}: {error}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn booking_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "booked": {"type": "boolean"},
                "time": {"type": "string"},
                "party_size": {"type": "integer", "minimum": 1},
            },
            "required": ["booked", "party_size"],
            "additionalProperties": false,
        })
    }

    #[test]
    fn a_valid_outcome_passes_the_check() {
        let schema = OutcomeSchema::parse(booking_schema()).expect("a valid schema");

        let result = schema.check(&json!({"booked": true, "time": "19:30", "party_size": 4}));

        assert_eq!(result, Ok(()));
    }

    #[test]
    fn an_invalid_outcome_is_refused_with_the_path_of_each_error() {
        let schema = OutcomeSchema::parse(booking_schema()).expect("a valid schema");

        let errors = schema
            .check(&json!({"booked": "yes", "party_size": "four"}))
            .expect_err("two wrong types");

        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.starts_with("/booked: ")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("/party_size: ") && e.contains("integer")),
            "{errors:?}"
        );
    }

    #[test]
    fn a_missing_required_property_is_reported_at_the_root() {
        let schema = OutcomeSchema::parse(booking_schema()).expect("a valid schema");

        let errors = schema
            .check(&json!({"booked": false}))
            .expect_err("party_size missing");

        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("party_size"), "{errors:?}");
        assert!(!errors[0].starts_with('/'), "{errors:?}");
    }

    #[test]
    fn many_errors_are_cut_to_the_reported_maximum_and_counted() {
        let properties: serde_json::Map<String, Value> = (0..15)
            .map(|n| (format!("p{n}"), json!({"type": "integer"})))
            .collect();
        let schema = OutcomeSchema::parse(json!({"type": "object", "properties": properties}))
            .expect("a valid schema");
        let outcome: serde_json::Map<String, Value> =
            (0..15).map(|n| (format!("p{n}"), json!("x"))).collect();

        let errors = schema
            .check(&Value::Object(outcome))
            .expect_err("15 errors");

        assert_eq!(errors.len(), MAX_REPORTED_ERRORS + 1);
        assert_eq!(errors.last().map(String::as_str), Some("... and 5 more"));
    }

    #[test]
    fn a_schema_that_is_not_an_object_is_refused() {
        assert_eq!(
            OutcomeSchema::parse(json!(true)).map(|_| ()),
            Err(OutcomeSchemaError::NotAnObject)
        );
        assert_eq!(
            OutcomeSchema::parse(json!("object")).map(|_| ()),
            Err(OutcomeSchemaError::NotAnObject)
        );
    }

    #[test]
    fn a_schema_larger_than_the_limit_is_refused_with_its_size() {
        let big = json!({"type": "object", "description": "x".repeat(MAX_OUTCOME_SCHEMA_BYTES)});

        let error = OutcomeSchema::parse(big).expect_err("too large");

        assert!(matches!(error, OutcomeSchemaError::TooLarge(n) if n > MAX_OUTCOME_SCHEMA_BYTES));
    }

    #[test]
    fn a_schema_that_breaks_its_meta_schema_is_refused_with_the_reason() {
        let error = OutcomeSchema::parse(json!({"type": "objekt"})).expect_err("no such type");

        let message = error.to_string();
        assert!(
            message.starts_with("outcome_schema is not a valid JSON Schema: "),
            "{message}"
        );
        assert!(message.contains("objekt"), "{message}");
    }

    #[test]
    fn a_schema_that_refers_to_a_remote_document_is_refused_and_nothing_is_fetched() {
        let error = OutcomeSchema::parse(json!({"$ref": "http://127.0.0.1:9/schema.json"}))
            .expect_err("remote references are not resolved");

        assert!(matches!(error, OutcomeSchemaError::Invalid(_)), "{error:?}");
    }

    #[test]
    fn formats_are_asserted() {
        let schema = OutcomeSchema::parse(json!({"type": "string", "format": "date"}))
            .expect("a valid schema");

        assert_eq!(schema.check(&json!("2026-12-01")), Ok(()));
        assert!(schema.check(&json!("tomorrow")).is_err());
    }
}
