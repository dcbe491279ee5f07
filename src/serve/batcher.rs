//! Dynamic batching: one worker thread per model owns the net (Burn's modules stay on
//! the thread that runs them), takes requests from a bounded queue, gathers them until
//! `max_batch` examples or `max_delay` after the first, and runs them as one batch.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::metrics::ModelMetrics;
use crate::families::online::{InferError, NamedTensor, Request, Served, Signature};

pub type Answer = Result<Vec<NamedTensor>, InferError>;

/// How requests are gathered into batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Examples per batch (a request larger than this runs alone).
    pub max_batch: usize,
    pub max_delay: Duration,
    /// Requests waiting at most; more are refused at once.
    pub queue: usize,
}

struct Job {
    request: Request,
    examples: usize,
    reply: oneshot::Sender<Answer>,
}

/// The handle the HTTP side holds of one model's worker.
pub struct Worker {
    queue: SyncSender<Job>,
    /// Set once the model is loaded and warmed up.
    pub signature: Arc<OnceLock<Signature>>,
    pub metrics: Arc<ModelMetrics>,
}

/// Why a request was not queued.
pub enum Refused {
    /// The queue is full: the caller answers 503 at once.
    Full,
    /// The worker is gone (its model failed to load, or the server is stopping).
    Stopped,
}

impl Worker {
    /// Starts the worker thread; `load` runs on it and builds the model. `loaded` gets
    /// the outcome of loading and warming up.
    pub fn start(
        name: String,
        policy: BatchPolicy,
        load: impl FnOnce() -> anyhow::Result<Box<dyn Served>> + Send + 'static,
        loaded: impl FnOnce(anyhow::Result<()>) + Send + 'static,
    ) -> anyhow::Result<Self> {
        let (queue, jobs) = sync_channel::<Job>(policy.queue);
        let signature = Arc::new(OnceLock::new());
        let metrics = Arc::new(ModelMetrics::default());
        let (ready_signature, worker_metrics) = (signature.clone(), metrics.clone());
        std::thread::Builder::new().name(format!("model {name}")).spawn(move || {
            let model = load().and_then(|model| model.warm_up().map(|()| model));
            match model {
                Ok(model) => {
                    let _ = ready_signature.set(model.signature().clone());
                    loaded(Ok(()));
                    run(&*model, &jobs, policy, &worker_metrics);
                }
                Err(err) => loaded(Err(err)),
            }
        })?;
        Ok(Self { queue, signature, metrics })
    }

    /// Queues a request; the answer comes on the returned channel.
    pub fn submit(&self, request: Request) -> Result<oneshot::Receiver<Answer>, Refused> {
        let (reply, answer) = oneshot::channel();
        let examples = request.inputs.first().and_then(|t| t.shape.first()).copied().unwrap_or(1);
        match self.queue.try_send(Job { request, examples, reply }) {
            Ok(()) => {
                self.metrics.enqueued();
                Ok(answer)
            }
            Err(TrySendError::Full(_)) => Err(Refused::Full),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Stopped),
        }
    }
}

/// The worker's loop, until every sender is dropped.
fn run(model: &dyn Served, jobs: &Receiver<Job>, policy: BatchPolicy, metrics: &ModelMetrics) {
    while let Ok(first) = jobs.recv() {
        let deadline = Instant::now() + policy.max_delay;
        let mut examples = first.examples;
        let mut batch = vec![first];
        while examples < policy.max_batch {
            let wait = deadline.saturating_duration_since(Instant::now());
            match jobs.recv_timeout(wait) {
                Ok(job) => {
                    examples += job.examples;
                    batch.push(job);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        metrics.dequeued(batch.len());
        // A request whose client gave up (timed out) is not worth running.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        metrics.batch(batch.iter().map(|job| job.examples).sum());
        let (requests, replies): (Vec<Request>, Vec<_>) =
            batch.into_iter().map(|job| (job.request, job.reply)).unzip();
        for (reply, answer) in replies.into_iter().zip(model.infer(&requests)) {
            let _ = reply.send(answer);
        }
    }
}
