//! One error type for the whole HTTP surface. Domain code returns `AppError`;
//! `IntoResponse` turns it into `{code, message, request_id}` with the matching
//! status. Internal causes are logged here and never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

tokio::task_local! {
    /// The id of the request being served; set by the request-id middleware so
    /// every error body can carry it without threading it through handlers.
    pub static REQUEST_ID: String;
}

/// The request id of the current task, or "-" outside a request.
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(|r| r.clone())
        .unwrap_or_else(|_| "-".into())
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("authentication required")]
    AuthRequired,
    #[error("session expired")]
    SessionExpired,
    #[error("missing or invalid CSRF token")]
    CsrfInvalid,
    #[error("{0}")]
    Forbidden(String),
    #[error("administrator role required")]
    AdminRequired,
    #[error("this account is disabled")]
    UserInactive,
    #[error("invalid username or password")]
    InvalidCredentials,
    /// A signed-in user's current password, asked again, did not match.
    #[error("The current password is not correct.")]
    WrongPassword,
    #[error("{0}")]
    InvalidInvite(String),
    #[error("registration is closed on this server")]
    RegistrationClosed,
    #[error("username already taken")]
    UsernameExists,
    #[error("{0}")]
    Validation(String),
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// An uploaded file over `[files] max_file_bytes` (the message names
    /// the limit).
    #[error("{0}")]
    FileTooLarge(String),
    /// Over the user's storage quota for files.
    #[error("{0}")]
    StorageQuotaExceeded(String),
    /// A file whose content is not a type confab keeps.
    #[error("{0}")]
    UnsupportedFileType(String),
    /// A file with no bytes.
    #[error("{0}")]
    FileEmpty(String),
    /// A file that claims a type but cannot be read as it (an image too
    /// large to decode, a broken header).
    #[error("{0}")]
    FileUnreadable(String),
    /// Images sent to a model that cannot read them.
    #[error("{0}")]
    VisionUnsupported(String),
    #[error("{0}")]
    NotFound(String),
    #[error("conversation not found")]
    ConversationNotFound,
    #[error("{0}")]
    ModelNotFound(String),
    #[error("{0}")]
    ProviderUnreachable(String),
    #[error("{0}")]
    ProviderTimeout(String),
    #[error("{0}")]
    ProviderError(String),
    /// Adding a provider with `test: true`, and it did not answer.
    #[error("{0}")]
    ProviderTestFailed(String),
    #[error("{message}")]
    QuotaExceeded {
        message: String,
        retry_after: Option<u64>,
    },
    #[error("{message}")]
    RateLimited { message: String, retry_after: u64 },
    #[error("{0}")]
    Conflict(String),
    /// A document attached to a turn could not be read (what and why).
    #[error("{0}")]
    DocumentUnreadable(String),
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    /// The account uses two-factor sign-in and no code was sent
    /// (`/api/auth/token` without `totp_code`).
    #[error(
        "this account uses two-factor sign-in; send the 6-digit code from the authenticator app (or a recovery code) as totp_code"
    )]
    TwoFactorRequired,
    /// A wrong, used or malformed TOTP or recovery code.
    #[error("The code is not correct. Check the authenticator app and try again.")]
    InvalidTwoFactorCode,
    /// The second sign-in step's challenge is unknown, used up or expired.
    #[error("This sign-in step has expired. Sign in again with your password.")]
    ChallengeExpired,
    /// The policy requires a second factor the caller has not set up: only
    /// enrolment (and signing out) is open until they do.
    #[error("Set up two-factor sign-in before you continue.")]
    TwoFactorEnrolmentRequired,
    /// A reset or verification link that is unknown, used or expired.
    #[error("{0}")]
    InvalidLink(String),
    /// Mail is not configured on this server.
    #[error("this server does not send email (no [smtp] configured); ask an administrator")]
    MailNotConfigured,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// `auth.local_passwords = false`.
    #[error("Sign-in with a confab password is turned off on this server; use single sign-on.")]
    LocalPasswordsDisabled,
    /// A single sign-on refused (code `SSO_*`, see `sso::SsoError`).
    #[error("{message}")]
    Sso { code: &'static str, message: String },
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `VALIDATION_FAILED`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// The id of the request, also sent as `x-request-id`.
    pub request_id: String,
}

impl AppError {
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(e.into())
    }
    pub fn validation(msg: impl Into<String>) -> Self {
        AppError::Validation(msg.into())
    }
    pub fn not_found(what: &str) -> Self {
        AppError::NotFound(format!("{what} not found"))
    }

    pub fn code(&self) -> &'static str {
        use AppError::*;
        match self {
            AuthRequired => "AUTH_REQUIRED",
            SessionExpired => "SESSION_EXPIRED",
            CsrfInvalid => "CSRF_INVALID",
            Forbidden(_) => "FORBIDDEN",
            AdminRequired => "ADMIN_REQUIRED",
            UserInactive => "USER_INACTIVE",
            InvalidCredentials => "INVALID_CREDENTIALS",
            WrongPassword => "WRONG_PASSWORD",
            InvalidInvite(_) => "INVALID_INVITE",
            RegistrationClosed => "REGISTRATION_CLOSED",
            UsernameExists => "USERNAME_EXISTS",
            Validation(_) => "VALIDATION_FAILED",
            PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            FileTooLarge(_) => "PAYLOAD_TOO_LARGE",
            StorageQuotaExceeded(_) => "STORAGE_QUOTA_EXCEEDED",
            UnsupportedFileType(_) => "UNSUPPORTED_FILE_TYPE",
            FileEmpty(_) => "FILE_EMPTY",
            FileUnreadable(_) => "FILE_UNREADABLE",
            VisionUnsupported(_) => "VISION_UNSUPPORTED",
            NotFound(_) => "NOT_FOUND",
            ConversationNotFound => "CONVERSATION_NOT_FOUND",
            ModelNotFound(_) => "MODEL_NOT_FOUND",
            ProviderUnreachable(_) => "PROVIDER_UNREACHABLE",
            ProviderTimeout(_) => "PROVIDER_TIMEOUT",
            ProviderError(_) => "PROVIDER_ERROR",
            ProviderTestFailed(_) => "PROVIDER_TEST_FAILED",
            QuotaExceeded { .. } => "QUOTA_EXCEEDED",
            RateLimited { .. } => "RATE_LIMITED",
            Conflict(_) => "CONFLICT",
            DocumentUnreadable(_) => "DOCUMENT_UNREADABLE",
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
            TwoFactorRequired => "TWO_FACTOR_REQUIRED",
            InvalidTwoFactorCode => "INVALID_TWO_FACTOR_CODE",
            ChallengeExpired => "CHALLENGE_EXPIRED",
            TwoFactorEnrolmentRequired => "TWO_FACTOR_ENROLMENT_REQUIRED",
            InvalidLink(_) => "INVALID_LINK",
            MailNotConfigured => "MAIL_NOT_CONFIGURED",
            Internal(_) => "INTERNAL",
            Unavailable(_) => "UNAVAILABLE",
            LocalPasswordsDisabled => "LOCAL_PASSWORDS_DISABLED",
            Sso { code, .. } => code,
        }
    }

    pub fn status(&self) -> StatusCode {
        use AppError::*;
        match self {
            AuthRequired | SessionExpired | InvalidCredentials => StatusCode::UNAUTHORIZED,
            CsrfInvalid | Forbidden(_) | AdminRequired | UserInactive | InvalidInvite(_)
            | RegistrationClosed | WrongPassword => StatusCode::FORBIDDEN,
            UsernameExists | Conflict(_) => StatusCode::CONFLICT,
            Validation(_) => StatusCode::BAD_REQUEST,
            PayloadTooLarge(_) | FileTooLarge(_) | StorageQuotaExceeded(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            UnsupportedFileType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            FileEmpty(_) => StatusCode::BAD_REQUEST,
            FileUnreadable(_) | VisionUnsupported(_) => StatusCode::UNPROCESSABLE_ENTITY,
            NotFound(_) | ConversationNotFound | ModelNotFound(_) => StatusCode::NOT_FOUND,
            ProviderUnreachable(_) | ProviderError(_) => StatusCode::BAD_GATEWAY,
            ProviderTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProviderTestFailed(_) | DocumentUnreadable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            QuotaExceeded { .. } | RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            TwoFactorRequired | InvalidTwoFactorCode | ChallengeExpired => StatusCode::UNAUTHORIZED,
            TwoFactorEnrolmentRequired => StatusCode::FORBIDDEN,
            InvalidLink(_) => StatusCode::BAD_REQUEST,
            MailNotConfigured => StatusCode::CONFLICT,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            LocalPasswordsDisabled => StatusCode::FORBIDDEN,
            Sso { code, .. } => match *code {
                "SSO_UNKNOWN_PROVIDER" => StatusCode::NOT_FOUND,
                "SSO_PROVIDER_UNAVAILABLE" => StatusCode::BAD_GATEWAY,
                "SSO_ALREADY_LINKED" | "SSO_LAST_SIGN_IN" => StatusCode::CONFLICT,
                _ => StatusCode::FORBIDDEN,
            },
        }
    }

    /// The message a client sees: internal causes are replaced by a generic text.
    pub fn public_message(&self) -> String {
        match self {
            AppError::Internal(_) => {
                "internal error; the request id identifies it in the server log".into()
            }
            other => other.to_string(),
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: self.public_message(),
            request_id: current_request_id(),
        }
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::NotFound => AppError::NotFound("not found".into()),
            crate::store::StoreError::Conflict(m) => AppError::Conflict(m),
            other => AppError::Internal(anyhow::Error::new(other)),
        }
    }
}

/// One stable code per provider failure (DESIGN.md "Errors"); the message is
/// the provider error's own, which names the provider but never its URL or key.
impl From<crate::providers::ProviderError> for AppError {
    fn from(e: crate::providers::ProviderError) -> Self {
        use crate::providers::ProviderError as P;
        let message = e.to_string();
        match e {
            P::Unreachable(_) => AppError::ProviderUnreachable(message),
            P::Timeout(_) => AppError::ProviderTimeout(message),
            P::KeyRejected(_) | P::Upstream { .. } | P::Protocol(_) | P::Redirected(_) => {
                AppError::ProviderError(message)
            }
            P::RateLimited {
                retry_after_secs, ..
            } => AppError::RateLimited {
                message,
                retry_after: retry_after_secs.unwrap_or(1).max(1),
            },
            P::ModelNotFound(_) => AppError::ModelNotFound(message),
            P::Unsupported(_) => AppError::Validation(message),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let AppError::Internal(cause) = &self {
            // The cause goes to the log (with the request id), never to the client.
            tracing::error!(request_id = %current_request_id(), error = %format!("{cause:#}"), "internal error");
        }
        let status = self.status();
        let retry_after = match &self {
            AppError::RateLimited { retry_after, .. } => Some(*retry_after),
            AppError::QuotaExceeded { retry_after, .. } => *retry_after,
            _ => None,
        };
        let mut resp = (status, axum::Json(self.body())).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&secs.max(1).to_string()).expect("digits"),
            );
        }
        resp
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ProviderError as P;

    #[test]
    fn provider_errors_map_to_stable_codes() {
        let cases = [
            (P::Unreachable("x".into()), "PROVIDER_UNREACHABLE", 502),
            (P::Timeout("x".into()), "PROVIDER_TIMEOUT", 504),
            (P::KeyRejected("x".into()), "PROVIDER_ERROR", 502),
            (
                P::Upstream {
                    status: 500,
                    message: "boom".into(),
                },
                "PROVIDER_ERROR",
                502,
            ),
            (P::Protocol("x".into()), "PROVIDER_ERROR", 502),
            (P::ModelNotFound("x".into()), "MODEL_NOT_FOUND", 404),
        ];
        for (pe, code, status) in cases {
            let code_before = pe.code();
            let e = AppError::from(pe);
            assert_eq!(e.code(), code);
            assert_eq!(e.code(), code_before, "same code as the provider layer");
            assert_eq!(e.status().as_u16(), status);
        }
        let e = AppError::from(P::RateLimited {
            message: "slow down".into(),
            retry_after_secs: Some(7),
        });
        assert!(matches!(e, AppError::RateLimited { retry_after: 7, .. }));
        assert_eq!(e.public_message(), "slow down");
        let e = AppError::from(P::RateLimited {
            message: "slow down".into(),
            retry_after_secs: None,
        });
        assert!(matches!(e, AppError::RateLimited { retry_after: 1, .. }));
    }
}
