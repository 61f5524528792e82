//! Dynamic batching: concurrent requests' texts go into one queue, and one
//! model thread takes them a batch at a time, up to the padded-token and
//! sequence caps, sorted by length (the [`crate::batch::Batcher`] does the sorting and
//! the splitting). The model's CPU pool runs one forward pass at a time
//! anyway, so one worker feeding one model is the design: under load, many
//! small requests become a few full batches.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::metrics::Metrics;
use crate::batch::{CancelFlag, EncodedText};
use crate::classifier::{Classifier, ClassifyOptions};
use crate::error::{Error, Result};
use crate::postprocess::Prediction;

/// Padding a forward pass may add, as a fraction of its real tokens,
/// before its requests are split into another pass, where padding is
/// computed (see
/// [`crate::Batcher::with_max_padding`]).
const MAX_PADDING: f32 = 0.25;

/// One request's texts, tokenized, waiting for the model.
pub struct Job {
    pub texts: Vec<Result<EncodedText>>,
    pub options: ClassifyOptions,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<Vec<Result<Prediction>>>,
    /// Set when the request ends before its answer (a timeout, a client
    /// gone): its remaining forward passes are skipped.
    pub cancel: CancelFlag,
}

impl Job {
    fn abandoned(&self) -> bool {
        self.reply.is_closed() || self.cancel.is_cancelled()
    }

    fn sequences(&self) -> usize {
        self.texts
            .iter()
            .map(|t| t.as_ref().map_or(0, EncodedText::sequences))
            .sum()
    }

    fn longest(&self) -> usize {
        self.texts
            .iter()
            .map(|t| t.as_ref().map_or(0, EncodedText::longest))
            .max()
            .unwrap_or(0)
    }
}

/// The caps of one forward pass.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Padded tokens: the longest sequence's length times the sequences.
    pub max_batch_tokens: usize,
    /// Sequences.
    pub max_batch_requests: usize,
}

/// The queue between the request handlers and the model thread.
pub struct Queue {
    jobs: Mutex<QueueState>,
    ready: Condvar,
}

struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl Queue {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            jobs: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        })
    }

    /// Adds a job; false (and the job dropped) once the queue is closed.
    pub fn push(&self, job: Job) -> bool {
        let mut state = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if state.closed {
            return false;
        }
        state.jobs.push_back(job);
        self.ready.notify_one();
        true
    }

    /// Stops the worker once the jobs already queued are done.
    pub fn close(&self) {
        let mut state = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        state.closed = true;
        self.ready.notify_all();
    }

    /// Waits for work and takes jobs in arrival order while they fit the
    /// limits (always at least one). Jobs whose client has gone are
    /// dropped here, before they cost a forward pass. None once closed and
    /// drained.
    fn next_batch(&self, limits: BatchLimits, metrics: &Metrics) -> Option<Vec<Job>> {
        let mut state = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            while let Some(job) = state.jobs.front() {
                if !job.abandoned() {
                    break;
                }
                state.jobs.pop_front();
                metrics.dropped.inc();
            }
            if !state.jobs.is_empty() {
                break;
            }
            if state.closed {
                return None;
            }
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let mut taken: Vec<Job> = Vec::new();
        let (mut sequences, mut longest) = (0usize, 0usize);
        while let Some(job) = state.jobs.front() {
            if job.abandoned() {
                state.jobs.pop_front();
                metrics.dropped.inc();
                continue;
            }
            let (more, long) = (sequences + job.sequences(), longest.max(job.longest()));
            let fits = more <= limits.max_batch_requests
                && more.saturating_mul(long) <= limits.max_batch_tokens;
            if !taken.is_empty() && !fits {
                break;
            }
            (sequences, longest) = (more, long);
            taken.extend(state.jobs.pop_front());
        }
        Some(taken)
    }
}

/// The model thread: takes batches until the queue is closed and drained.
pub fn run_worker(
    classifier: Arc<Classifier>,
    queue: Arc<Queue>,
    limits: BatchLimits,
    metrics: Arc<Metrics>,
) {
    while let Some(jobs) = queue.next_batch(limits, &metrics) {
        let started = Instant::now();
        let sequences: usize = jobs.iter().map(Job::sequences).sum();
        let tokens: usize = jobs
            .iter()
            .flat_map(|job| job.texts.iter())
            .map(|t| t.as_ref().map_or(0, EncodedText::tokens))
            .sum();
        for job in &jobs {
            metrics
                .queue_time
                .observe(seconds(started.saturating_duration_since(job.enqueued)));
        }
        // Jobs with the same options share the forward passes.
        let mut groups: Vec<(ClassifyOptions, Vec<Job>)> = Vec::new();
        for job in jobs {
            match groups
                .iter_mut()
                .find(|(options, _)| *options == job.options)
            {
                Some((_, group)) => group.push(job),
                None => groups.push((job.options, vec![job])),
            }
        }
        let answers: Vec<_> = groups
            .into_iter()
            .flat_map(|(options, group)| {
                classify_group(&classifier, options, limits, group, &metrics)
            })
            .collect();
        // Metrics first, so a client that reads /metrics after its answer
        // sees its own request counted.
        metrics.batch_size.observe(sequences as f64);
        metrics.tokens.inc_by(tokens as u64);
        metrics.inference_time.observe(seconds(started.elapsed()));
        for (reply, results) in answers {
            // A client that has gone no longer listens; that is fine.
            let _ = reply.send(results);
        }
    }
}

/// Where one job's results go, and the results.
type Answer = (
    oneshot::Sender<Vec<Result<Prediction>>>,
    Vec<Result<Prediction>>,
);

/// Runs one group's texts as one engine run: each job's answer.
fn classify_group(
    classifier: &Classifier,
    options: ClassifyOptions,
    limits: BatchLimits,
    group: Vec<Job>,
    metrics: &Metrics,
) -> Vec<Answer> {
    let mut batcher = classifier
        .batcher(options)
        .with_batch_size(limits.max_batch_requests)
        .with_max_batch_tokens(limits.max_batch_tokens);
    // Where padding is computed (a GPU), a round of mixed lengths is split
    // rather than padded to its longest; on the CPU padding costs nothing
    // and the round stays one full batch.
    if !classifier.runs_unpadded() {
        batcher = batcher.with_max_padding(MAX_PADDING);
    }
    // A job too big to share a forward pass runs alone (next_batch takes
    // no second job past the caps), and stops between passes once its
    // request has ended. Jobs that share a group fit one pass together.
    if let [job] = group.as_slice() {
        batcher = batcher.with_cancel(job.cancel.clone());
    }
    let mut replies = Vec::with_capacity(group.len());
    let mut texts = Vec::new();
    for job in group {
        replies.push((job.reply, job.texts.len()));
        texts.extend(job.texts);
    }
    let count = texts.len();
    let mut results = batcher
        .classify_encoded(texts)
        .unwrap_or_else(|| {
            metrics.cancelled.inc();
            (0..count)
                .map(|_| {
                    Err(Error::from(candle_core::Error::Msg(
                        "the run was cancelled".into(),
                    )))
                })
                .collect()
        })
        .into_iter();
    replies
        .into_iter()
        .map(|(reply, n)| (reply, results.by_ref().take(n).collect()))
        .collect()
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::Encoded;

    fn job(text_tokens: usize) -> (Job, oneshot::Receiver<Vec<Result<Prediction>>>) {
        let encoded = Encoded {
            ids: vec![1; text_tokens],
            attention_mask: vec![1; text_tokens],
            type_ids: vec![0; text_tokens],
            truncated: false,
        };
        let (reply, receiver) = oneshot::channel();
        let job = Job {
            texts: vec![EncodedText::new(vec![encoded])],
            options: ClassifyOptions::default(),
            enqueued: Instant::now(),
            reply,
            cancel: CancelFlag::new(),
        };
        (job, receiver)
    }

    /// A client that gave up while its request waited (its receiver
    /// dropped) has its work dropped before it costs a forward pass, and
    /// counted; the waiting clients' work goes on. The worker is not
    /// running here, so nothing races: this is the queue as a paused worker
    /// finds it.
    #[test]
    fn abandoned_requests_are_dropped_before_the_model_sees_them() {
        let (queue, metrics) = (Queue::new(), Metrics::new());
        let (gone_first, receiver) = job(5);
        drop(receiver);
        let (waiting, _waiting_receiver) = job(7);
        let (gone_later, receiver) = job(3);
        drop(receiver);
        for job in [gone_first, waiting, gone_later] {
            assert!(queue.push(job));
        }
        let limits = BatchLimits {
            max_batch_tokens: 1 << 14,
            max_batch_requests: 32,
        };
        let batch = queue.next_batch(limits, &metrics).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].longest(), 7);
        assert_eq!(metrics.dropped.get(), 2);
        queue.close();
        assert!(queue.next_batch(limits, &metrics).is_none());
    }
}
