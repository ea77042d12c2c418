//! The API's OpenAPI document, as the tests hold the server to it: every
//! answer a test gets through [`crate::api_support::Api`] is checked
//! against what the document gives for its operation and status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

/// The document, as the server serves it.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| serde_json::to_value(wasmjob::api::document()).unwrap())
}

/// Every operation of the document: method, path template, operation.
pub fn operations() -> Vec<(Method, &'static str, &'static Value)> {
    let mut all = Vec::new();
    for (template, item) in document()["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if let Ok(method) = method.to_ascii_uppercase().parse::<Method>() {
                all.push((method, template.as_str(), operation));
            }
        }
    }
    all
}

/// The operation `method path` (its query ignored) falls under: of the
/// templates it matches, the one with the most literal segments
/// (`/v1/tasks/batch` before `/v1/tasks/{id}`).
pub fn operation(method: &Method, path: &str) -> Option<(&'static str, &'static Value)> {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    let mut best: Option<(usize, &'static str, &'static Value)> = None;
    for (m, template, operation) in operations() {
        let parts: Vec<&str> = template.split('/').collect();
        if m != *method || parts.len() != segments.len() {
            continue;
        }
        let fits = parts.iter().zip(&segments).all(|(p, s)| if p.starts_with('{') { !s.is_empty() } else { p == s });
        let literal = parts.iter().filter(|p| !p.starts_with('{')).count();
        if fits && best.is_none_or(|(l, ..)| literal > l) {
            best = Some((literal, template, operation));
        }
    }
    best.map(|(_, template, operation)| (template, operation))
}

/// Checks an answer against the document: its status is one its operation
/// documents, its content type the documented one, and a JSON body valid
/// against the documented schema. An answer to a path the document does
/// not have must be its error body. Panics naming what differs.
pub fn check(method: &Method, path: &str, status: StatusCode, content_type: Option<&str>, body: &Value) {
    let documented = match operation(method, path) {
        Some((template, operation)) => {
            let responses = &operation["responses"];
            let range = format!("{}XX", &status.as_str()[..1]);
            let response = responses
                .get(status.as_str())
                .or_else(|| responses.get(&range))
                .or_else(|| responses.get("default"))
                .unwrap_or_else(|| panic!("{method} {template} answered {status}, which it does not document"));
            let Some((media, content)) = response["content"].as_object().and_then(|c| c.iter().next()) else {
                assert_eq!(body, &json!(""), "{method} {template} answered {status} with a body it does not document");
                return;
            };
            let answered = content_type.unwrap_or_default();
            assert!(
                answered.starts_with(media.as_str()),
                "{method} {template} answered {status} as `{answered}`, documented as `{media}`"
            );
            if !media.ends_with("json") {
                return;
            }
            content["schema"].clone()
        }
        None => json!({ "$ref": "#/components/schemas/ErrorBody" }),
    };
    let validator = validator(documented);
    if let Err(error) = validator.validate(body) {
        panic!("{method} {path} answered {status} with a body its document does not allow: {error}\n{body:#}");
    }
}

/// A validator of `schema`, whose references point into the document's
/// components (each schema compiled once).
fn validator(schema: Value) -> Arc<jsonschema::Validator> {
    static VALIDATORS: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let key = schema.to_string();
    let mut validators = VALIDATORS.get_or_init(Default::default).lock().unwrap();
    validators
        .entry(key)
        .or_insert_with(|| {
            let mut root = match schema {
                Value::Object(object) => object,
                other => panic!("a schema that is not an object: {other}"),
            };
            root.insert("components".into(), document()["components"].clone());
            let root = Value::Object(root);
            Arc::new(jsonschema::draft202012::options().build(&root).expect("the document's schemas compile"))
        })
        .clone()
}
