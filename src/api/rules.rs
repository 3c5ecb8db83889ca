//! `/v1/rules`: the rules document and its rules.
//!
//! Every response carries the table's `ETag` (`"<version>-<digest>"`); every mutation takes an
//! optional `If-Match` (412 and the current tag when it is stale) and goes through the
//! [`Controller`](crate::control::Controller): validated in full (422 lists every problem like
//! `l7mark check`), written to the rules file atomically, then swapped into the data path.

use axum::body::Body;
use axum::extract::{Path, State, rejection::PathRejection};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::{ReadAccess, WriteAccess};
use super::error::ApiError;
use super::{ApiState, if_match, json_body, json_response, with_firewall_warning};
use crate::control::Command;
use crate::rules::RuleDoc;

fn path_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    id.map(|Path(id)| id)
        .map_err(|e| ApiError::BadRequest(format!("bad rule id in the path: {e}")))
}

fn rule_json(rule: &RuleDoc) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec_pretty(rule).map_err(|e| ApiError::Internal(e.to_string()))
}

/// `GET /v1/rules`: the document as stored in the rules file.
pub async fn get_doc(_: ReadAccess, State(s): State<ApiState>) -> Response {
    let snap = s.controller().snapshot();
    json_response(
        StatusCode::OK,
        snap.table.doc().to_json_pretty().into_bytes(),
        &snap.etag(),
    )
}

/// `PUT /v1/rules`: replace the whole document. 200 with the new document and `ETag`.
pub async fn put_doc(
    _: WriteAccess,
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let tag = if_match(&headers)?;
    let bytes = json_body(&s, &headers, body).await?;
    let done = s.execute(tag, Command::Replace(bytes.to_vec())).await?;
    let snap = &done.snapshot;
    Ok(with_firewall_warning(
        json_response(
            StatusCode::OK,
            snap.table.doc().to_json_pretty().into_bytes(),
            &snap.etag(),
        ),
        &done.firewall,
    ))
}

/// `POST /v1/rules`: append one rule. 201 with the rule, `Location` and `ETag`; 409 when the id
/// exists.
pub async fn add_rule(
    _: WriteAccess,
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let tag = if_match(&headers)?;
    let bytes = json_body(&s, &headers, body).await?;
    let done = s.execute(tag, Command::Add(bytes.to_vec())).await?;
    let snap = &done.snapshot;
    // The new rule is the last one (validation would have refused anything else).
    let rule = snap
        .table
        .doc()
        .rules
        .last()
        .ok_or_else(|| ApiError::Internal("the added rule is missing".into()))?;
    let mut resp = json_response(StatusCode::CREATED, rule_json(rule)?, &snap.etag());
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/rules/{}", rule.id)) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(with_firewall_warning(resp, &done.firewall))
}

/// `GET /v1/rules/{id}`: one rule; 404 for an unknown id.
pub async fn get_rule(
    _: ReadAccess,
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let snap = s.controller().snapshot();
    let rule = snap
        .table
        .doc()
        .rules
        .iter()
        .find(|r| r.id == id)
        .ok_or(ApiError::NoSuchRule(id))?;
    Ok(json_response(
        StatusCode::OK,
        rule_json(rule)?,
        &snap.etag(),
    ))
}

/// `PUT /v1/rules/{id}`: replace one rule in place (its position, hence its precedence, stays).
/// The body's `id` must equal the path's or be absent. 404 for an unknown id.
pub async fn put_rule(
    _: WriteAccess,
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let tag = if_match(&headers)?;
    let bytes = json_body(&s, &headers, body).await?;
    let done = s
        .execute(
            tag,
            Command::Put {
                id: id.clone(),
                rule: bytes.to_vec(),
            },
        )
        .await?;
    let snap = &done.snapshot;
    let rule = snap
        .table
        .doc()
        .rules
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::Internal("the replaced rule is missing".into()))?;
    Ok(with_firewall_warning(
        json_response(StatusCode::OK, rule_json(rule)?, &snap.etag()),
        &done.firewall,
    ))
}

/// `DELETE /v1/rules/{id}`: remove one rule. 204 with the new `ETag`; 404 for an unknown id.
pub async fn delete_rule(
    _: WriteAccess,
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let tag = if_match(&headers)?;
    let done = s.execute(tag, Command::Delete { id }).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&done.snapshot.etag()) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(with_firewall_warning(resp, &done.firewall))
}
