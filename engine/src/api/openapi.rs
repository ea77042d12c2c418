//! The OpenAPI document's head (title, security, tags) and what every
//! operation shares: its error answers. The paths come from the handlers'
//! `#[utoipa::path]` annotations, the schemas from [`crate::wire`].

use std::sync::Arc;

use utoipa::OpenApi as _;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, ResponseBuilder};

use crate::wire::{ErrorBody, Notice};

/// The rendered document, as `/v1/openapi.json` serves it.
#[derive(Clone)]
pub struct Document(pub Arc<OpenApi>);

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "wasmjob",
        description = "A job engine whose jobs are WebAssembly components. Every `/v1` route but \
            `/v1/openapi.json` takes `Authorization: Bearer <token>`: a tenant's token (read or write) \
            acts inside its tenant, the admin's token on tenants and tokens.",
    ),
    security(("bearer" = [])),
    components(schemas(ErrorBody, Notice)),
    modifiers(&Bearer),
    tags(
        (name = "tasks", description = "Queue, read, wait for, revoke and retry tasks."),
        (name = "jobs", description = "Upload components and read their jobs."),
        (name = "workflows", description = "Chains, groups and chords of tasks, and their state as a whole."),
        (name = "schedules", description = "Schedules that queue a job with given args on a cron expression or an interval."),
        (name = "secrets", description = "A tenant's secrets, write-only."),
        (name = "limits", description = "Limits on a tenant's queues and jobs: concurrency, priority, rate."),
        (name = "events", description = "A tenant's task and job events, live."),
        (name = "activity", description = "What the workers did per minute, job and tenant: the console's charts."),
        (name = "admin", description = "Tenants and tokens: the admin token only."),
        (name = "health", description = "Liveness, readiness, metrics and this document."),
    )
)]
struct Head;

/// The bearer scheme every operation needs unless it says otherwise.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The document before the routes' paths are added.
pub fn base() -> OpenApi {
    Head::openapi()
}

/// `document` with the error answers every operation may give: any 4xx or
/// 5xx answers an [`ErrorBody`].
pub fn finish(mut document: OpenApi) -> OpenApi {
    let error = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
            .build()
    };
    for item in document.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            responses.entry("4XX".into()).or_insert_with(|| error("The request was refused: see the code.").into());
            responses.entry("5XX".into()).or_insert_with(|| error("The engine failed to answer.").into());
        }
    }
    document
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::tenant::Quotas;

    fn schemas() -> Value {
        serde_json::to_value(super::super::document()).unwrap()["components"]["schemas"].take()
    }

    #[test]
    fn the_documents_bounds_are_the_engines() {
        let schemas = schemas();
        let ms = |d: std::time::Duration| d.as_millis() as f64;
        let options = &schemas["QueueOptions"]["properties"];
        assert_eq!(options["delay"]["maximum"].as_f64(), Some(ms(crate::task::MAX_DELAY)));
        assert_eq!(options["expiry"]["maximum"].as_f64(), Some(ms(crate::task::MAX_EXPIRY)));
        assert_eq!(options["max_retries"]["maximum"].as_f64(), Some(crate::task::MAX_RETRIES.into()));
        assert_eq!(schemas["BatchRequest"]["properties"]["tasks"]["maxItems"], json!(super::super::MAX_BATCH));
        assert_eq!(schemas["QueueRequest"]["properties"]["job"]["maxLength"], json!(crate::job::MAX_NAME_LEN));
        assert_eq!(schemas["SecretValue"]["properties"]["value"]["maxLength"], json!(crate::secret::MAX_VALUE_BYTES));
        let schedule = &schemas["ScheduleRequest"]["properties"];
        assert_eq!(schedule["every_ms"]["minimum"].as_f64(), Some(ms(crate::plan::MIN_EVERY)));
        assert_eq!(schedule["every_ms"]["maximum"].as_f64(), Some(ms(crate::plan::MAX_EVERY)));
        assert_eq!(schedule["cron"]["maxLength"], json!(crate::plan::MAX_EXPRESSION_BYTES));
        assert_eq!(schedule["zone"]["maxLength"], json!(crate::plan::MAX_EXPRESSION_BYTES));
        let hosts = &schemas["QuotaChanges"]["properties"]["allowed_hosts"]["maxItems"];
        assert_eq!(hosts, &json!(crate::egress::policy::MAX_RULES));
    }

    /// `QuotaChanges` (documentation only: overrides are read as a map)
    /// lists exactly the quotas, and each minimum it states is the lowest
    /// value the engine accepts.
    #[test]
    fn quota_changes_document_every_quota_and_its_lower_bound() {
        let schemas = schemas();
        let fields = |name: &str| schemas[name]["properties"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(fields("QuotaChanges"), fields("Quotas"));
        let defaults = Quotas::default();
        let with =
            |field: &str, value: Value| defaults.with(&serde_json::Map::from_iter([(field.to_owned(), value)])).is_ok();
        for (field, schema) in schemas["QuotaChanges"]["properties"].as_object().unwrap() {
            // (0 is an unsigned type's own bound.)
            if let Some(min) = schema["minimum"].as_u64().filter(|min| *min > 0) {
                assert!(with(field, json!(min)), "{field} = {min} is refused");
                assert!(!with(field, json!(min - 1)), "{field} = {} is accepted", min - 1);
            }
            if let Some(min) = schema["exclusiveMinimum"].as_f64() {
                assert!(!with(field, json!(min)), "{field} = {min} is accepted");
                assert!(with(field, json!(min + 0.001)), "{field} above {min} is refused");
            }
        }
    }
}
