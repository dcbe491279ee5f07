//! `shopnet serve`: export bundles answering the REST side of the Open Inference
//! Protocol (KServe v2, also spoken by Triton and Seldon MLServer), on axum.
//!
//! - Each bundle is verified (sha256, as `eval` does) before the server listens; its model
//!   loads and warms up on its own worker thread ([`batcher`]). `/v2/health/live` answers
//!   at once, `/v2/health/ready` once every model is loaded and warmed up.
//! - Every error is JSON (`{"error": "..."}`) with its status: 400 for a malformed request,
//!   404 for an unknown model or path, 413 for a body over the limit, 503 when a model's
//!   queue is full or it is not ready, 504 past the request timeout.
//! - SIGTERM or Ctrl-C stops accepting connections and finishes the requests in flight.

mod batcher;
mod metrics;
mod protocol;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use burn::tensor::Device;
use serde_json::{Value, json};

use crate::artifacts::opened::Artifacts;
use crate::families::driver;
use crate::families::online::InferError;
use crate::families::with_family;
pub use batcher::BatchPolicy;
use batcher::{Refused, Worker};

/// What `shopnet serve` was asked for.
pub struct ServeArgs {
    pub bundles: Vec<PathBuf>,
    pub addr: SocketAddr,
    pub policy: BatchPolicy,
    pub body_limit: usize,
    pub timeout: Duration,
    pub device: Device,
}

/// One served model.
struct Model {
    kind: String,
    worker: Worker,
}

struct Server {
    models: BTreeMap<String, Model>,
    timeout: Duration,
    body_limit: usize,
}

/// Loads the bundles, listens on `args.addr` and serves until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<()> {
    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let server = Arc::new(start_models(&args, failed_tx)?);
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("--port: cannot listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    let names: Vec<&str> = server.models.keys().map(String::as_str).collect();
    println!("listening on http://{addr} (models: {})", names.join(", "));
    let app = router(server.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        // Every sender is gone once all models loaded: that is no failure.
        let failure = async {
            match failed_rx.recv().await {
                Some(failure) => failure,
                None => std::future::pending().await,
            }
        };
        let reason = tokio::select! {
            () = shutdown_signal() => String::new(),
            failure = failure => failure,
        };
        let _ = stop_tx.send(reason);
    });
    let (failure_tx, failure_rx) = tokio::sync::oneshot::channel::<String>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let reason = stop_rx.await.unwrap_or_default();
            let _ = failure_tx.send(reason);
        })
        .await
        .context("the server stopped")?;
    match failure_rx.await.unwrap_or_default() {
        reason if reason.is_empty() => {
            println!("stopped: every request in flight was answered");
            Ok(())
        }
        reason => bail!(reason),
    }
}

/// Verifies every bundle and starts its worker; a model that then fails to load sends
/// its error on `failed`, which stops the server.
fn start_models(
    args: &ServeArgs,
    failed: tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<Server> {
    let mut models = BTreeMap::new();
    for dir in &args.bundles {
        let artifacts = Artifacts::open(dir)?;
        if !artifacts.is_bundle() {
            bail!(
                "--bundle {}: a run directory; serve an export bundle (shopnet export --run RUN_DIR --out BUNDLE)",
                dir.display()
            );
        }
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .ok_or_else(|| anyhow!("--bundle {}: cannot name the model", dir.display()))?;
        if models.contains_key(&name) {
            bail!("--bundle {}: a second model named {name:?} (the folder name)", dir.display());
        }
        let kind = artifacts.info.kind;
        // Config and manifest checked here, so that a bad bundle stops the server at once.
        with_family!(kind, F => driver::open::<F>(artifacts.clone()).map(|_| ()))
            .with_context(|| format!("--bundle {}", dir.display()))?;
        let device = args.device.clone();
        let load = move || with_family!(kind, F => driver::online::<F>(artifacts, &device));
        let failed = failed.clone();
        let model_name = name.clone();
        let loaded = move |outcome: Result<()>| match outcome {
            Ok(()) => eprintln!("model {model_name} is ready"),
            Err(err) => {
                let _ = failed.send(format!("model {model_name}: {err:#}"));
            }
        };
        let worker = Worker::start(name.clone(), args.policy, load, loaded)?;
        models.insert(name, Model { kind: kind.to_string(), worker });
    }
    Ok(Server { models, timeout: args.timeout, body_limit: args.body_limit })
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    eprintln!("stopping: finishing the requests in flight");
}

fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/metrics", get(metrics_text))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
        })
        .with_state(server)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(protocol::error_body(message))).into_response()
}

impl Server {
    fn unknown_model(&self, name: &str) -> Response {
        let known: Vec<&str> = self.models.keys().map(String::as_str).collect();
        error(
            StatusCode::NOT_FOUND,
            &format!("unknown model {name:?} (served: {})", known.join(", ")),
        )
    }

    /// Models not yet loaded and warmed up.
    fn still_loading(&self) -> usize {
        self.models.values().filter(|m| m.worker.signature.get().is_none()).count()
    }
}

fn loading(name: &str) -> String {
    format!("model {name:?} is loading")
}

async fn server_metadata() -> Response {
    axum::Json(json!({
        "name": "shopnet",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
    .into_response()
}

async fn server_ready(State(server): State<Arc<Server>>) -> Response {
    match server.still_loading() {
        0 => StatusCode::OK.into_response(),
        waiting => {
            error(StatusCode::SERVICE_UNAVAILABLE, &format!("{waiting} models still loading"))
        }
    }
}

async fn model_ready(State(server): State<Arc<Server>>, Path(name): Path<String>) -> Response {
    match server.models.get(&name) {
        Some(model) if model.worker.signature.get().is_some() => StatusCode::OK.into_response(),
        Some(_) => error(StatusCode::SERVICE_UNAVAILABLE, &loading(&name)),
        None => server.unknown_model(&name),
    }
}

async fn model_metadata(State(server): State<Arc<Server>>, Path(name): Path<String>) -> Response {
    let Some(model) = server.models.get(&name) else { return server.unknown_model(&name) };
    match model.worker.signature.get() {
        Some(signature) => {
            let platform = format!("shopnet_{}", model.kind);
            axum::Json(protocol::model_metadata(&name, &platform, signature)).into_response()
        }
        None => error(StatusCode::SERVICE_UNAVAILABLE, &loading(&name)),
    }
}

async fn metrics_text(State(server): State<Arc<Server>>) -> Response {
    let models = server.models.iter().map(|(name, m)| (name.as_str(), &*m.worker.metrics));
    ([("content-type", "text/plain; version=0.0.4")], metrics::render(models)).into_response()
}

async fn infer(
    State(server): State<Arc<Server>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let Some(model) = server.models.get(&name) else { return server.unknown_model(&name) };
    let response = match read_body(&headers, body, server.body_limit).await {
        Ok(body) => answer(&server, model, &name, &body).await,
        Err(response) => response,
    };
    model.worker.metrics.answered(response.status().as_u16(), started.elapsed());
    response
}

/// The request body, at most `limit` bytes. A declared length over the limit is refused
/// before any of the body is read (a client waiting for `100 Continue` sends none of it).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Response> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is over the limit of {limit} bytes"),
        )
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|_| too_large())
}

/// The answer to one infer request to `model`.
async fn answer(server: &Server, model: &Model, name: &str, body: &[u8]) -> Response {
    let parsed = match protocol::parse_request(body) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    if model.worker.signature.get().is_none() {
        return error(StatusCode::SERVICE_UNAVAILABLE, &loading(name));
    }
    let pending = match model.worker.submit(parsed.request) {
        Ok(pending) => pending,
        Err(Refused::Full) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, &format!("model {name:?}: queue full"));
        }
        Err(Refused::Stopped) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, &format!("model {name:?} is stopping"));
        }
    };
    let outputs = match tokio::time::timeout(server.timeout, pending).await {
        Err(_) => {
            let ms = server.timeout.as_millis();
            return error(StatusCode::GATEWAY_TIMEOUT, &format!("no answer within {ms} ms"));
        }
        Ok(Err(_)) => return error(StatusCode::SERVICE_UNAVAILABLE, "the model stopped"),
        Ok(Ok(Err(InferError::BadRequest(message)))) => {
            return error(StatusCode::BAD_REQUEST, &message);
        }
        Ok(Ok(Err(InferError::Internal(message)))) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, &message);
        }
        Ok(Ok(Ok(outputs))) => outputs,
    };
    match protocol::infer_response(name, parsed.id.as_deref(), outputs, parsed.outputs.as_deref()) {
        Ok(body) => axum::Json::<Value>(body).into_response(),
        Err(message) => error(StatusCode::BAD_REQUEST, &message),
    }
}
