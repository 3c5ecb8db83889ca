//! `POST /v1/explain`: classify one payload against the current table, exactly like
//! `l7mark explain` (the same function, the same JSON).
//!
//! Request: `{"proto": "http" | "tls" | "icp", "payload_base64": "<standard base64>"}` (padding
//! optional). 400 when the request itself is unusable (malformed JSON, unknown field, wrong type,
//! unknown protocol, bad base64); 422 when the payload is not a complete, valid message of that
//! protocol.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;

use super::auth::ReadAccess;
use super::error::ApiError;
use super::{ApiState, json_body, json_response};
use crate::classify::{self, PayloadProto};

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// `http`, `tls` or `icp`.
    pub proto: String,
    /// The first payload bytes (TCP stream start or UDP datagram payload), base64.
    pub payload_base64: String,
}

/// Standard alphabet; with or without `=` padding (clients differ).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `POST /v1/explain`.
pub async fn explain(
    _: ReadAccess,
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = json_body(&s, &headers, body).await?;
    let req: ExplainRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("bad explain request: {e}")))?;
    let proto: PayloadProto = req
        .proto
        .parse()
        .map_err(|e: String| ApiError::BadRequest(format!("proto: {e}")))?;
    let payload = B64
        .decode(req.payload_base64.trim())
        .map_err(|e| ApiError::BadRequest(format!("payload_base64: not valid base64: {e}")))?;
    let snap = s.controller().snapshot();
    let explained = classify::explain(proto, &payload, &snap.table)
        .map_err(|e| ApiError::Unclassifiable(e.to_string()))?;
    let json = serde_json::to_vec(&explained).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(json_response(StatusCode::OK, json, &snap.etag()))
}
