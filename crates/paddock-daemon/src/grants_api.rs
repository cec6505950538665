//! The `/v1/grants` HTTP routes over [`crate::grants::Grants`]: request parsing (a value
//! only ever in a `PUT` body, never echoed in an error), blocking store calls off the async
//! threads.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use paddock_api::PutGrant;

use crate::DaemonError;
use crate::server::{ApiError, ApiResult, ServerState, json_response, ok};

type St = State<Arc<ServerState>>;

/// The `/v1/grants` routes (merged into [`crate::server::router`]).
pub(crate) fn routes() -> Router<Arc<ServerState>> {
    Router::new().route("/v1/grants", get(list_grants)).route(
        "/v1/grants/{name}",
        get(get_grant).put(put_grant).delete(revoke_grant),
    )
}

/// Runs a store operation on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DaemonError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ApiError(DaemonError::Conflict {
                message: format!("the grant operation was interrupted: {e}"),
                hint: "retry; `paddock grant list` shows the current grants".into(),
            })
        })?
        .map_err(ApiError)
}

async fn list_grants(State(st): St) -> ApiResult {
    let grants = st.runs.grants().clone();
    ok(&blocking(move || grants.list()).await?)
}

async fn get_grant(State(st): St, UrlPath(name): UrlPath<String>) -> ApiResult {
    let grants = st.runs.grants().clone();
    ok(&blocking(move || grants.info(&name)).await?)
}

async fn revoke_grant(State(st): St, UrlPath(name): UrlPath<String>) -> ApiResult {
    let grants = st.runs.grants().clone();
    ok(&blocking(move || grants.revoke(&name)).await?)
}

async fn put_grant(
    State(st): St,
    UrlPath(name): UrlPath<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            DaemonError::PayloadTooLarge {
                limit: paddock_api::MAX_REQUEST_BODY,
            }
        } else {
            DaemonError::bad_request("could not read the request body", "retry the request")
        }
    })?;
    // serde's messages may quote the input (the value, even); say only where it went wrong.
    let req: PutGrant = serde_json::from_slice(&body).map_err(|e| {
        DaemonError::bad_request(
            format!(
                "the grant request does not fit the API ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
            "send {\"kind\": \"github\", \"value\": \"…\"} (see the paddock-api crate docs)",
        )
    })?;
    drop(body);
    let grants = st.runs.grants().clone();
    let out = blocking(move || grants.put(&name, req)).await?;
    let status = if out.replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json_response(status, &out))
}
