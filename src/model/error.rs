//! The API's error type: one variant per App Mesh / AWS error kind. `api` maps each to its
//! HTTP status and `x-amzn-ErrorType`; nothing here knows HTTP.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ApiError {
    /// A request body, parameter or spec breaks a rule; the text names the field and the rule.
    #[error("{0}")]
    BadRequest(String),
    /// The named resource (or its mesh or parent) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A resource of that name exists, or a client token was reused with other parameters.
    #[error("{0}")]
    Conflict(String),
    /// Deleting a resource that others still refer to; the text names the referrers.
    #[error("{0}")]
    ResourceInUse(String),
    /// The caller may not do this (for example, another account's mesh owner).
    #[error("{0}")]
    Forbidden(String),
    /// A service limit was reached.
    #[error("{0}")]
    LimitExceeded(String),
    /// A resource would carry more than 50 tags.
    #[error("{0}")]
    TooManyTags(String),
    /// The request carried no SigV4 signature at all.
    #[error("{0}")]
    MissingAuthenticationToken(String),
    /// The signature is malformed or lacks a required part.
    #[error("{0}")]
    IncompleteSignature(String),
    /// The access key id is not one this control plane knows.
    #[error("{0}")]
    UnrecognizedClient(String),
    /// The signature does not match the request.
    #[error("{0}")]
    InvalidSignature(String),
    /// The request is signed for a time too far from now.
    #[error("{0}")]
    RequestExpired(String),
    /// The operation or path does not exist.
    #[error("{0}")]
    UnknownOperation(String),
    /// The control plane cannot serve writes now (for example, the disk is full).
    #[error("{0}")]
    ServiceUnavailable(String),
    /// Our own failure. The source is logged; the client sees a fixed text.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    /// The AWS error type, as `x-amzn-ErrorType` carries it and the CLI prints it.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "BadRequestException",
            Self::NotFound(_) => "NotFoundException",
            Self::Conflict(_) => "ConflictException",
            Self::ResourceInUse(_) => "ResourceInUseException",
            Self::Forbidden(_) => "ForbiddenException",
            Self::LimitExceeded(_) => "LimitExceededException",
            Self::TooManyTags(_) => "TooManyTagsException",
            Self::MissingAuthenticationToken(_) => "MissingAuthenticationTokenException",
            Self::IncompleteSignature(_) => "IncompleteSignatureException",
            Self::UnrecognizedClient(_) => "UnrecognizedClientException",
            Self::InvalidSignature(_) => "InvalidSignatureException",
            Self::RequestExpired(_) => "RequestExpired",
            Self::UnknownOperation(_) => "UnknownOperationException",
            Self::ServiceUnavailable(_) => "ServiceUnavailableException",
            Self::Internal(_) => "InternalServerErrorException",
        }
    }
}
