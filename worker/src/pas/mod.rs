//! PAS, the Public Audit Stream: one hash-chained event per committed partition, compatible with
//! the original's v1.1 events (docs/formats.md#pas-event-audit-stream-v11) so a chain it
//! started can be continued and verified, without its faults (two hash functions, forks on failed delivery,
//! holes after a strict failure).
//!
//! * [`event`]: the event, its Go-compatible hash ([`gojson`]), the stable event id;
//! * [`outbox`]: durable, create-if-absent storage (backup directory or object store);
//! * [`chain`]: reading a chain back, checking it, finding its head;
//! * [`delivery`]: HTTP delivery, at least once and in order, with an idempotency key;
//! * [`hook`]: all of it as the sequencer's commit hook.

pub mod chain;
pub mod delivery;
pub mod event;
pub mod gojson;
pub mod hook;
pub mod outbox;

#[cfg(test)]
mod original_format_tests;

use std::sync::Arc;
use std::time::Duration;

pub use chain::{ChainIssue, ChainView, Head, StoredEvent, analyse, reconcile_head};
pub use delivery::{Courier, DeliveryError, HttpDelivery};
pub use event::{ChainId, PasEvent, go_rfc3339_nano};
pub use hook::{DeliveryConfig, PasError, PasStream};
pub use outbox::{Created, Delivered, FileOutbox, ObjectStoreOutbox, Outbox, OutboxError};

use crate::config::{Config, PAS_OUTBOX_STORAGE};
use crate::publish::DatasetLayout;
use crate::store::Location;

/// The HTTP delivery `pas.*` asks for, if any. The token is read from the environment variable
/// named by `pas.token_env`.
pub fn delivery_from_config(
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<DeliveryConfig>, PasError> {
    let pas = &config.pas;
    if pas.endpoint.is_empty() {
        return Ok(None);
    }
    let token = (!pas.token_env.is_empty())
        .then(|| env(&pas.token_env))
        .flatten();
    let http = HttpDelivery::new(
        &pas.endpoint,
        token,
        Duration::from_millis(pas.timeout_ms.max(1)),
        config.perf.retry_attempts.max(1),
        Duration::from_millis(config.perf.retry_backoff_ms),
    )
    .map_err(PasError::Client)?;
    Ok(Some(DeliveryConfig {
        http,
        strict: pas.strict,
    }))
}

/// The outbox `pas.outbox` names, as it is (nothing created): the backup directory, or the
/// output storage `output` (see [`ObjectStoreOutbox`]). For reading, e.g. by `verify`.
pub fn outbox_from_config(config: &Config, output: &Location) -> Arc<dyn Outbox> {
    if config.pas.outbox == PAS_OUTBOX_STORAGE {
        Arc::new(ObjectStoreOutbox::new(
            output.clone(),
            &config.storage.prefix,
        ))
    } else {
        Arc::new(FileOutbox::at(&config.pas.backup_dir))
    }
}

/// The stream `pas.*` describes, when `pas.enabled`: the standalone copier's, and the operator's
/// (which sets `pas.outbox: storage`), so both write the same events in the same layout.
pub async fn open_from_config(config: &Config) -> Result<Option<PasStream>, PasError> {
    if !config.pas.enabled {
        return Ok(None);
    }
    let outbox: Arc<dyn Outbox> = if config.pas.outbox == PAS_OUTBOX_STORAGE {
        let output = crate::pipeline::open_output_location(config)?;
        outbox_from_config(config, &output)
    } else {
        Arc::new(FileOutbox::open(&config.pas.backup_dir)?)
    };
    let delivery = delivery_from_config(config, |k| std::env::var(k).ok())?;
    PasStream::open(DatasetLayout::from_config(config), outbox, delivery)
        .await
        .map(Some)
}
