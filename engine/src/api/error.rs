//! API errors: a stable code, a message for people, the right status.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::limits::LimitError;
use crate::queue::QueueFailure;
use crate::registry::RegisterError;
use crate::runtime::LoadError;
use crate::store::StoreError;
use crate::task::QueueError;
use crate::wire::{ErrorBody, ErrorDetail};

/// An error answer: `{"error": {"code": ..., "message": ..., ...}}`
/// ([`ErrorBody`]).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// What the error concerns, for some codes (`existing_task`, `field`,
    /// `quota`); its `code` and `message` are set from the fields above.
    pub details: Option<Box<ErrorDetail>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// Also the answer for another tenant's objects: nothing leaks about
    /// what exists.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{} not found", what.into()))
    }

    /// A request whose body or query the extractor refused: 413
    /// `payload_too_large` for a body over the limit, else 400 naming what
    /// is wrong (for JSON, the path of the offending field).
    fn rejected(status: StatusCode, text: String) -> Self {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(status, "payload_too_large", text)
        } else {
            Self::bad_request(text)
        }
    }

    /// A 422 naming the request's field at fault.
    pub(crate) fn invalid_option(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_option", message);
        error.details().field = Some(field.into());
        error
    }

    /// What the error concerns, to fill in.
    fn details(&mut self) -> &mut ErrorDetail {
        self.details.get_or_insert_default()
    }

    /// The error concerns this quota.
    pub(crate) fn quota(mut self, quota: impl Into<String>) -> Self {
        self.details().quota = Some(quota.into());
        self
    }

    /// The answer's body.
    pub fn body(self) -> ErrorBody {
        let details = self.details.map(|d| *d).unwrap_or_default();
        ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message, ..details } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        (status, Json(self.body())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure behind an API request");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the engine could not reach its store")
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        let message = e.to_string();
        match e {
            QueueError::UnknownJob(job) => {
                Self::new(StatusCode::NOT_FOUND, "unknown_job", format!("job `{job}` not found"))
            }
            QueueError::Duplicate(id) => {
                let mut error = Self::new(StatusCode::CONFLICT, "duplicate", message);
                error.details().existing_task = Some(id);
                error
            }
            QueueError::InvalidArgs(_) | QueueError::DepthExceeded(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_args", message)
            }
            QueueError::InvalidOption { field, .. } => Self::invalid_option(field, message),
            QueueError::QuotaExceeded(_) => Self::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message),
        }
    }
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        let message = e.to_string();
        match e {
            LimitError::TooMany(_) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message).quota("limits")
            }
            LimitError::TooLarge { field, .. } => Self::invalid_option(field, message),
            LimitError::NoTasks => Self::invalid_option("rate.tasks", message),
            LimitError::Period(_) => Self::invalid_option("rate.per_ms", message),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        Self::rejected(e.status(), e.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        Self::rejected(e.status(), e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::rejected(e.status(), e.body_text())
    }
}

impl From<QueueFailure> for ApiError {
    fn from(e: QueueFailure) -> Self {
        match e {
            QueueFailure::Rejected(e) => e.into(),
            QueueFailure::Store(e) => e.into(),
        }
    }
}

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::Rejected(e @ LoadError::TooLarge { .. }) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", e.to_string())
            }
            RegisterError::Rejected(e @ LoadError::ShuttingDown) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", e.to_string())
            }
            RegisterError::Rejected(e @ LoadError::Compiler(_)) => {
                tracing::error!(error = %e, "the compiler failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
            RegisterError::Rejected(e) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_component", e.to_string())
            }
            RegisterError::Quota(e) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", e.to_string()).quota(e.quota)
            }
            RegisterError::Store(e) => e.into(),
            e @ RegisterError::Busy(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()),
            e @ RegisterError::Misnamed { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_component", e.to_string())
            }
        }
    }
}
