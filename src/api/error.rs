//! The one place that turns an `ApiError` into an HTTP response in AWS's rest-json error
//! shape: a status, `x-amzn-ErrorType`, and `{"message": ...}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::model::ApiError;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) | ApiError::LimitExceeded(_) | ApiError::TooManyTags(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::NotFound(_) | ApiError::UnknownOperation(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::ResourceInUse(_) => StatusCode::CONFLICT,
            ApiError::Forbidden(_)
            | ApiError::MissingAuthenticationToken(_)
            | ApiError::IncompleteSignature(_)
            | ApiError::UnrecognizedClient(_)
            | ApiError::InvalidSignature(_)
            | ApiError::RequestExpired(_) => StatusCode::FORBIDDEN,
            ApiError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if let ApiError::Internal(source) = &self {
            // The client gets a fixed text; the cause goes to the log only.
            tracing::error!(error = format!("{source:#}"), "internal error");
        } else {
            tracing::debug!(error_type = self.error_type(), message = ?self.to_string(), "request refused");
        }
        let kind = self.error_type();
        (
            status,
            [("x-amzn-ErrorType", kind)],
            Json(json!({ "message": self.to_string() })),
        )
            .into_response()
    }
}
