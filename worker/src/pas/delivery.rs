//! HTTP delivery of events that are already safe in the outbox: at least once, in chain order,
//! identified by `Idempotency-Key: <event_id>` so the receiver can drop repeats.
//!
//! The [`Courier`] keeps the queue of events not yet delivered and the per-chain delivery cursor
//! (in the outbox), so a restart re-sends exactly what was not acknowledged.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::event::{ChainId, PasEvent};
use super::outbox::{Delivered, Outbox, OutboxError};
use crate::partition::LedgerRange;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(
        "PAS event {event_id} (ledgers {range}) was not accepted by {endpoint} after {attempts} attempt(s): {last}"
    )]
    Rejected {
        event_id: String,
        range: LedgerRange,
        endpoint: String,
        attempts: u32,
        last: String,
    },
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// How to reach the endpoint.
#[derive(Clone)]
pub struct HttpDelivery {
    client: reqwest::Client,
    endpoint: String,
    token: Option<String>,
    timeout: Duration,
    attempts: u32,
    backoff: Duration,
}

impl std::fmt::Debug for HttpDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("HttpDelivery")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl HttpDelivery {
    /// `attempts` per event (at least 1), waiting `backoff × 2^k` between them; `timeout` per attempt.
    pub fn new(
        endpoint: &str,
        token: Option<String>,
        timeout: Duration,
        attempts: u32,
        backoff: Duration,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            // A redirect would be a surprise; treat it as a failure instead of following it
            // with the token.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .user_agent(format!("bronze-copier/{}", crate::VERSION))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            endpoint: endpoint.to_string(),
            token: token.filter(|t| !t.is_empty()),
            timeout,
            attempts: attempts.max(1),
            backoff,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn backoff(&self) -> Duration {
        self.backoff
    }

    /// Per attempt.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// One POST; `Err` says why it did not count as delivered.
    async fn post_once(&self, event: &PasEvent, body: &str) -> Result<(), String> {
        let mut request = self
            .client
            .post(&self.endpoint)
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &event.event_id)
            .body(body.to_string());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(describe_error)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(200).collect();
        Err(format!("http {}: {}", status.as_u16(), text.trim()))
    }

    /// POSTs the event, retrying with exponential backoff.
    pub async fn send(&self, event: &PasEvent) -> Result<(), DeliveryError> {
        let body = event.to_compact_json();
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match self.post_once(event, &body).await {
                Ok(()) => {
                    tracing::debug!(event_id = %event.event_id, attempt, "PAS event delivered");
                    return Ok(());
                }
                Err(e) => {
                    last = e;
                    if attempt < self.attempts {
                        let wait = self.backoff * 2u32.saturating_pow(attempt - 1);
                        tracing::warn!(
                            event_id = %event.event_id,
                            partition = %range_of(event),
                            attempt,
                            error = %last,
                            "PAS delivery attempt failed; retrying in {wait:?}"
                        );
                        crate::metrics::retry("pas_delivery");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        Err(DeliveryError::Rejected {
            event_id: event.event_id.clone(),
            range: range_of(event),
            endpoint: self.endpoint.clone(),
            attempts: self.attempts,
            last,
        })
    }
}

fn range_of(event: &PasEvent) -> LedgerRange {
    let p = &event.partition;
    LedgerRange::new(p.ledger_start, p.ledger_end.max(p.ledger_start))
}

/// The error and its causes on one line (reqwest hides the useful part in `source()`).
fn describe_error(e: reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Delivers one chain's events in order and records how far it got.
pub struct Courier {
    http: HttpDelivery,
    outbox: Arc<dyn Outbox>,
    chain: ChainId,
    queue: Mutex<Queue>,
    /// Only one delivery round at a time, so events leave in order.
    round: tokio::sync::Mutex<()>,
    wake: tokio::sync::Notify,
}

struct Queue {
    events: VecDeque<PasEvent>,
    /// `event_hash` of every event delivered or queued: the cursor is a position in the
    /// chain, not a ledger (a replacement event covers ledgers delivered before).
    covered: std::collections::HashSet<String>,
}

impl Courier {
    /// `delivered`: the `event_hash` of every event already delivered.
    pub fn new(
        http: HttpDelivery,
        outbox: Arc<dyn Outbox>,
        chain: ChainId,
        delivered: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            http,
            outbox,
            chain,
            queue: Mutex::new(Queue {
                events: VecDeque::new(),
                covered: delivered.into_iter().collect(),
            }),
            round: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub fn http(&self) -> &HttpDelivery {
        &self.http
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `event` unless it (or a later one) was already delivered or queued.
    pub fn enqueue(&self, event: &PasEvent) {
        let mut q = self.queue();
        if q.covered.insert(event.chain.event_hash.clone()) {
            q.events.push_back(event.clone());
            drop(q);
            self.wake.notify_one();
        }
    }

    /// Events not yet delivered.
    pub fn pending(&self) -> usize {
        self.queue().events.len()
    }

    /// Waits until something is queued (a wake-up is never lost).
    pub async fn wait_for_work(&self) {
        self.wake.notified().await;
    }

    /// Delivers every queued event in order, recording each success. Stops at the first event
    /// that cannot be delivered (it stays first in the queue).
    pub async fn flush(&self) -> Result<(), DeliveryError> {
        let _round = self.round.lock().await;
        loop {
            let Some(event) = self.queue().events.front().cloned() else {
                return Ok(());
            };
            self.http.send(&event).await?;
            let delivered = Delivered {
                event_hash: event.chain.event_hash.clone(),
                event_id: event.event_id.clone(),
                ledger_start: event.partition.ledger_start,
                ledger_end: event.partition.ledger_end,
            };
            self.outbox
                .record_delivered(&self.chain, &delivered)
                .await?;
            let mut q = self.queue();
            if q.events.front().map(|e| &e.event_id) == Some(&event.event_id) {
                q.events.pop_front();
            }
            let pending = q.events.len();
            drop(q);
            tracing::info!(
                event_id = %event.event_id,
                partition = %range_of(&event),
                pending,
                "PAS event delivered"
            );
        }
    }
}
