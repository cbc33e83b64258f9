//! The one place where a failure becomes an HTTP answer: the spec's error
//! resource (`type`, `status`, `code`, `message`, `detail`, and
//! `fieldName` when one field of the request is to blame).
//!
//! Codes are what a client switches on, so each names one kind of mistake:
//! `NotFound` 404; `MissingRequired`, `InvalidFormat`, `InvalidOption`,
//! `InvalidReference` 422; `NotUnique` 409 (a name taken);
//! `ActionNotAvailable` 409 (not in this state); `InvalidState` 409;
//! `Unauthorized` 401; `MethodNotAllowed` 405; `RequestTooLarge` 413;
//! `UnsupportedMediaType` 415; `Internal` 500.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::containers;
use crate::error::{Error, ErrorKind};

/// A failure on its way to becoming a Rancher error body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub detail: String,
    pub field: Option<String>,
    /// The volume whose mounts refused the request, and their number:
    /// [`name_containers`] asks Docker which containers they are.
    /// (Boxed: errors travel in `Result`s, which stay small.)
    pub in_use: Option<Box<(String, usize)>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: String::new(),
            field: None,
            in_use: None,
        }
    }

    /// The request never reached the core: its method, path, query or
    /// body could not be taken as they came.
    pub fn rejected(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
            StatusCode::PAYLOAD_TOO_LARGE => "RequestTooLarge",
            StatusCode::NOT_FOUND => "NotFound",
            s if s.is_server_error() => "Internal",
            _ => "InvalidFormat",
        };
        ApiError::new(status, code, message)
    }

    /// A 422 that blames one field of the request.
    pub fn field(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message);
        e.field = Some(field.to_string());
        e
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Blames `field` for a domain refusal of the request's input (a bad
    /// driverOpts value, a name taken); other failures pass unchanged.
    pub fn on_field(mut self, field: &str) -> Self {
        let input = self.status == StatusCode::UNPROCESSABLE_ENTITY || self.code == "NotUnique";
        if input && self.field.is_none() {
            self.field = Some(field.to_string());
        }
        self
    }

    /// A reference in the request's input that names nothing: the 404 of
    /// the referenced resource becomes a 422 on the field.
    pub fn as_reference(self, field: &str) -> Self {
        if self.status != StatusCode::NOT_FOUND {
            return self;
        }
        let mut e = ApiError::field("InvalidReference", field, self.message);
        e.detail = format!("`{field}` must name an existing resource (by id or name)");
        e
    }

    /// Keeps the volume of `e` when it is in use (for a refusal made of
    /// its text), so that the containers are named.
    pub fn in_use_of(mut self, e: &Error) -> Self {
        if let Error::InUse { volume, mounts, .. } = e {
            self.in_use = Some(Box::new((volume.clone(), *mounts)));
        }
        self
    }

    pub fn body(&self) -> serde_json::Value {
        let detail = if self.detail.is_empty() { default_detail(self.code) } else { &self.detail };
        let mut body = json!({
            "type": "error",
            "status": self.status.as_u16(),
            "code": self.code,
            "message": self.message,
            "detail": detail,
        });
        if let Some(f) = &self.field {
            body["fieldName"] = json!(f);
        }
        body
    }
}

/// What to do about an error of this code, when nothing more precise is
/// known.
fn default_detail(code: &str) -> &'static str {
    match code {
        "MissingRequired" | "InvalidFormat" | "InvalidOption" => {
            "/v1/schemas lists each field's type, options and rules"
        }
        "InvalidFilter" => "/v1/schemas lists each type's collectionFilters and their modifiers",
        "InvalidReference" => "the field must name an existing resource, by id or name",
        "NotUnique" => "another resource has this name; choose another",
        "ActionNotAvailable" => "the resource's `actions` map lists what it allows now",
        "NotFound" => "list the collection to see what exists",
        "MethodNotAllowed" => "the Allow header lists the methods this URL takes",
        "RequestTooLarge" => "request bodies are at most 2 MiB",
        "UnsupportedMediaType" => "send application/json or application/x-www-form-urlencoded",
        "Unauthorized" => "send HTTP basic auth with the configured access and secret key",
        _ => "the daemon's log has more",
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code, detail) = match e.kind() {
            ErrorKind::NotFound => (
                StatusCode::NOT_FOUND,
                "NotFound",
                "nothing has this id or name; list the collection to see what exists",
            ),
            ErrorKind::InvalidInput => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "InvalidFormat",
                "the request was refused as a whole and changed nothing",
            ),
            ErrorKind::InvalidState => (
                StatusCode::CONFLICT,
                "InvalidState",
                "the resource's current state does not allow this; its `actions` map lists \
                 what it allows now",
            ),
            ErrorKind::Conflict => (
                StatusCode::CONFLICT,
                "NotUnique",
                "another resource already has this name; choose another",
            ),
            ErrorKind::Internal => {
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal", "the daemon's log has the details")
            }
        };
        ApiError::new(status, code, e.to_string()).detail(detail).in_use_of(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(error = %self.message, "admin request failed");
        }
        let mut resp = super::reply(self.status, self.body());
        if self.in_use.is_some() {
            // Rendered again by `name_containers`, once the handler (and
            // any volume lock it held) is done.
            resp.extensions_mut().insert(self);
        }
        resp
    }
}

/// Names the containers in a volume-in-use error, when Docker says which:
/// a layer around the handlers, so it asks only after they have returned
/// and released the volume.
pub async fn name_containers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let Some(mut e) = resp.extensions_mut().remove::<ApiError>() else { return resp };
    let Some((volume, mounts)) = e.in_use.take().map(|b| *b) else { return resp };
    let Some(containers) = containers::mounting(&volume).await else { return resp };
    let Some(message) = containers::message(&volume, mounts, &containers) else { return resp };
    e.message = message;
    e.into_response()
}

pub type ApiResult = Result<Response, ApiError>;
