//! What can go wrong talking to the execution client, as variants a caller can branch on.
//!
//! Transport problems and timeouts are worth retrying; JSON-RPC errors mostly are not
//! (the request was wrong); an HTTP 401 means the JWT secret differs from the EL's.

use std::time::Duration;

/// JSON-RPC error codes a consensus layer must tell apart (Engine API spec, "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcErrorKind {
    /// -32700: the EL could not parse our JSON.
    ParseError,
    /// -32600: not a valid JSON-RPC request.
    InvalidRequest,
    /// -32601: the EL does not serve this method (wrong version, or engine API off).
    MethodNotFound,
    /// -32602: wrong parameters (for example a missing field post-fork).
    InvalidParams,
    /// -32603: the EL failed internally.
    InternalError,
    /// -38001: getPayload for an id the EL does not know (expired or never built).
    UnknownPayload,
    /// -38002: the forkchoice state is inconsistent.
    InvalidForkchoiceState,
    /// -38003: payload attributes rejected (for example a timestamp not after the parent's).
    InvalidPayloadAttributes,
    /// -38004: too many items requested.
    TooLargeRequest,
    /// -38005: this method version does not serve the fork of the payload's timestamp.
    UnsupportedFork,
    /// Any other code.
    Other(i64),
}

impl RpcErrorKind {
    /// Maps a JSON-RPC error code to its kind.
    pub const fn from_code(code: i64) -> Self {
        match code {
            -32700 => Self::ParseError,
            -32600 => Self::InvalidRequest,
            -32601 => Self::MethodNotFound,
            -32602 => Self::InvalidParams,
            -32603 => Self::InternalError,
            -38001 => Self::UnknownPayload,
            -38002 => Self::InvalidForkchoiceState,
            -38003 => Self::InvalidPayloadAttributes,
            -38004 => Self::TooLargeRequest,
            -38005 => Self::UnsupportedFork,
            other => Self::Other(other),
        }
    }
}

/// A failed call to the execution client.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No HTTP exchange happened: connection refused, reset, DNS, and so on.
    #[error("{method}: cannot reach the execution client at {url}: {reason}")]
    Transport {
        /// The JSON-RPC method we were calling.
        method: &'static str,
        /// Where we were calling it.
        url: String,
        /// The underlying error, rendered.
        reason: String,
    },
    /// The call did not finish within its per-method timeout.
    #[error("{method}: no answer within {timeout:?}")]
    Timeout {
        /// The JSON-RPC method we were calling.
        method: &'static str,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// HTTP 401/403: the execution client refused our token.
    #[error(
        "{method}: the execution client rejected our JWT (HTTP {status}): {body}; check that --jwt-secret is the file the EL was started with"
    )]
    Unauthorized {
        /// The JSON-RPC method we were calling.
        method: &'static str,
        /// 401 or 403.
        status: u16,
        /// The EL's explanation, such as "signature is invalid" or "stale token".
        body: String,
    },
    /// Any other non-200 HTTP status.
    #[error("{method}: HTTP {status} from the execution client: {body}")]
    Http {
        /// The JSON-RPC method we were calling.
        method: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The response body, truncated.
        body: String,
    },
    /// The EL answered with a JSON-RPC error object.
    #[error("{method}: JSON-RPC error {code} ({kind:?}): {message}")]
    Rpc {
        /// The JSON-RPC method we were calling.
        method: &'static str,
        /// The raw error code.
        code: i64,
        /// The code's meaning.
        kind: RpcErrorKind,
        /// The EL's message.
        message: String,
    },
    /// The EL answered 200 but the body is not what the method returns.
    #[error("{method}: cannot decode the answer: {reason}")]
    Decode {
        /// The JSON-RPC method we were calling.
        method: &'static str,
        /// What did not fit.
        reason: String,
    },
}

impl EngineError {
    /// The JSON-RPC error kind, if the EL answered with an error object.
    pub const fn rpc_kind(&self) -> Option<RpcErrorKind> {
        match self {
            Self::Rpc { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// True for faults that may pass by themselves (EL restarting, overloaded): the same
    /// request is worth sending again after a pause. Errors about the request are not.
    pub const fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } => true,
            Self::Http { status, .. } => *status >= 500,
            Self::Rpc { kind, .. } => matches!(kind, RpcErrorKind::InternalError),
            Self::Unauthorized { .. } | Self::Decode { .. } => false,
        }
    }

    /// A short stable label for metrics and logs.
    pub const fn label(&self) -> &'static str {
        match self {
            Self::Transport { .. } => "transport",
            Self::Timeout { .. } => "timeout",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Http { .. } => "http",
            Self::Rpc { .. } => "rpc",
            Self::Decode { .. } => "decode",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_codes_map_to_their_kinds() {
        assert_eq!(RpcErrorKind::from_code(-38001), RpcErrorKind::UnknownPayload);
        assert_eq!(RpcErrorKind::from_code(-38003), RpcErrorKind::InvalidPayloadAttributes);
        assert_eq!(RpcErrorKind::from_code(-38005), RpcErrorKind::UnsupportedFork);
        assert_eq!(RpcErrorKind::from_code(-32601), RpcErrorKind::MethodNotFound);
        assert_eq!(RpcErrorKind::from_code(-1), RpcErrorKind::Other(-1));
    }

    #[test]
    fn only_passing_faults_are_retryable() {
        let transport = EngineError::Transport { method: "m", url: "u".into(), reason: "refused".into() };
        let timeout = EngineError::Timeout { method: "m", timeout: Duration::from_secs(1) };
        let unknown =
            EngineError::Rpc { method: "m", code: -38001, kind: RpcErrorKind::UnknownPayload, message: String::new() };
        let auth = EngineError::Unauthorized { method: "m", status: 401, body: String::new() };
        assert!(transport.is_retryable() && timeout.is_retryable());
        assert!(!unknown.is_retryable() && !auth.is_retryable());
    }
}
