//! Streaming upload of a file produced on a blocking thread.
//!
//! The encoder writes into an [`UploadSink`] (a plain `std::io::Write`) that cuts the stream into
//! parts and hands them over a bounded channel to an async task. A file that fits in one part is
//! sent with a single PUT; a larger one with a multipart upload. If the encoder stops without
//! calling [`UploadSink::finish`], the upload is aborted and nothing appears under the key.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Parts in flight between the encoder and the upload.
const CHANNEL_PARTS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("upload of {key} failed: {source}")]
    Store {
        key: String,
        source: object_store::Error,
    },
    #[error("upload of {key} was abandoned before the file was complete")]
    Abandoned { key: String },
    #[error("upload task of {key} failed: {message}")]
    Task { key: String, message: String },
}

enum Message {
    Part(Bytes),
    Done,
}

/// The writing end, used on the encoder's thread.
pub struct UploadSink {
    tx: mpsc::Sender<Message>,
    buffer: Vec<u8>,
    part_bytes: usize,
}

impl Write for UploadSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= self.part_bytes {
            let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.part_bytes));
            self.send(Message::Part(Bytes::from(part)))?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl UploadSink {
    fn send(&self, message: Message) -> std::io::Result<()> {
        self.tx.blocking_send(message).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload task has stopped")
        })
    }

    /// Sends the rest of the file and marks it complete.
    pub fn finish(mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            let part = std::mem::take(&mut self.buffer);
            self.send(Message::Part(Bytes::from(part)))?;
        }
        self.send(Message::Done)
    }
}

/// The async end: await it for the upload's outcome.
pub struct Uploader {
    key: String,
    task: JoinHandle<Result<u64, UploadError>>,
}

impl Uploader {
    /// Waits for the upload; returns the bytes uploaded.
    pub async fn wait(self) -> Result<u64, UploadError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(UploadError::Task {
                key: self.key,
                message: e.to_string(),
            }),
        }
    }

    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Starts uploading to `key`; write the file into the returned sink from a blocking thread.
pub fn start_upload(
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    part_bytes: usize,
) -> (UploadSink, Uploader) {
    let (tx, rx) = mpsc::channel(CHANNEL_PARTS);
    let name = key.to_string();
    let task = tokio::spawn(run_upload(store, key, part_bytes, rx));
    (
        UploadSink {
            tx,
            buffer: Vec::with_capacity(part_bytes),
            part_bytes,
        },
        Uploader { key: name, task },
    )
}

async fn run_upload(
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    part_bytes: usize,
    mut rx: mpsc::Receiver<Message>,
) -> Result<u64, UploadError> {
    let store_err = |source| UploadError::Store {
        key: key.to_string(),
        source,
    };
    let abandoned = || UploadError::Abandoned {
        key: key.to_string(),
    };
    let first = match rx.recv().await {
        Some(Message::Part(part)) => part,
        Some(Message::Done) => Bytes::new(),
        None => return Err(abandoned()),
    };
    let started = std::time::Instant::now();
    let second = if first.is_empty() {
        Some(Message::Done)
    } else {
        rx.recv().await
    };
    match second {
        Some(Message::Done) => {
            // Small file: one request.
            let len = first.len() as u64;
            store
                .put(&key, PutPayload::from(first))
                .await
                .map_err(store_err)?;
            crate::metrics::upload_finished(started.elapsed());
            Ok(len)
        }
        None => Err(abandoned()),
        Some(Message::Part(second)) => {
            let upload = store.put_multipart(&key).await.map_err(store_err)?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, part_bytes);
            let mut total = 0u64;
            let mut next = Some(Message::Part(first));
            let mut queued = Some(Message::Part(second));
            loop {
                let message = match next.take() {
                    Some(m) => m,
                    None => match queued.take() {
                        Some(m) => m,
                        None => match rx.recv().await {
                            Some(m) => m,
                            None => {
                                let _ = writer.abort().await;
                                return Err(abandoned());
                            }
                        },
                    },
                };
                match message {
                    Message::Part(part) => {
                        if let Err(e) = writer.wait_for_capacity(2).await {
                            let _ = writer.abort().await;
                            return Err(store_err(e));
                        }
                        total += part.len() as u64;
                        writer.put(part);
                    }
                    Message::Done => {
                        writer.finish().await.map_err(store_err)?;
                        crate::metrics::upload_finished(started.elapsed());
                        return Ok(total);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    async fn upload(
        data: Vec<u8>,
        part: usize,
        finish: bool,
    ) -> (Arc<InMemory>, Result<u64, UploadError>) {
        let store = Arc::new(InMemory::new());
        let (mut sink, uploader) =
            start_upload(store.clone(), ObjectPath::from("a/b.parquet"), part);
        tokio::task::spawn_blocking(move || {
            for chunk in data.chunks(1000) {
                sink.write_all(chunk).unwrap();
            }
            if finish {
                sink.finish().unwrap();
            }
        })
        .await
        .unwrap();
        let result = uploader.wait().await;
        (store, result)
    }

    #[tokio::test]
    async fn small_and_multipart_files_arrive_intact() {
        for (len, part) in [
            (10usize, 5 * 1024 * 1024),
            (13_000_000, 5 * 1024 * 1024),
            (0, 5 * 1024 * 1024),
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let (store, result) = upload(data.clone(), part, true).await;
            assert_eq!(result.unwrap(), len as u64);
            let got = store
                .get(&ObjectPath::from("a/b.parquet"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(got.as_ref(), data.as_slice(), "len {len}");
        }
    }

    #[tokio::test]
    async fn an_unfinished_file_is_never_stored() {
        for len in [10usize, 13_000_000] {
            let (store, result) = upload(vec![1; len], 5 * 1024 * 1024, false).await;
            assert!(
                matches!(result, Err(UploadError::Abandoned { .. })),
                "len {len}"
            );
            assert!(store.head(&ObjectPath::from("a/b.parquet")).await.is_err());
        }
    }
}
