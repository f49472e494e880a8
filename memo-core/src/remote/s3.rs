//! `s3://bucket[/prefix]`: any S3-compatible object store, through the
//! `object_store` crate (endpoint, region and credentials from the standard
//! `AWS_*` variables). The client is async: the tier owns a small runtime
//! of its own and waits for its tasks on a plain channel, so a memoized
//! call made inside a user's tokio task neither panics nor touches that
//! runtime. Values are never copied to be sent: the payload borrows the
//! local store's mapping. Writes are create-only (`If-None-Match: *`);
//! values over `MULTIPART_AT` go up in parts, after a `HEAD` (S3 has no
//! create-only multipart completion through this client). Leases are small
//! objects created with `If-None-Match: *`, renewed and taken over from a
//! dead holder with `If-Match` on their `ETag`.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, UpdateVersion,
};

use super::{Backend, LeaseState, unix_ms};

/// Values larger than this are uploaded in parts.
const MULTIPART_AT: usize = 64 << 20;
/// Size of one part.
const PART: usize = 16 << 20;

pub(crate) struct S3Backend {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    timeout: Duration,
    rt: Option<tokio::runtime::Runtime>,
}

fn os_err(e: &object_store::Error) -> io::Error {
    let kind = match e {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            io::ErrorKind::AlreadyExists
        }
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.to_string())
}

/// A conditional put: `false` when the condition failed (the object exists,
/// or changed since it was read).
async fn put_if(
    store: &dyn ObjectStore,
    path: &Path,
    payload: PutPayload,
    mode: PutMode,
) -> io::Result<bool> {
    let opts = PutOptions {
        mode,
        ..PutOptions::default()
    };
    match store.put_opts(path, payload, opts).await {
        Ok(_) => Ok(true),
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => Ok(false),
        Err(e) => Err(os_err(&e)),
    }
}

impl S3Backend {
    /// `rest` is the URL after `s3://`: `bucket[/prefix]`.
    pub(crate) fn open(rest: &str, timeout: Duration) -> Result<S3Backend, String> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("an s3:// URL needs a bucket (s3://bucket/prefix)".into());
        }
        let allow_http = std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v == "true" || v == "1");
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(timeout)
                    .with_connect_timeout(timeout),
            )
            .with_allow_http(allow_http)
            // The tier has its own back-off: one try per call, bounded.
            .with_retry(RetryConfig {
                max_retries: 0,
                retry_timeout: timeout,
                ..RetryConfig::default()
            })
            .build()
            .map_err(|e| format!("cannot set up the S3 client: {e}"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("memo-s3")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the S3 client's runtime: {e}"))?;
        Ok(S3Backend {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_string(),
            timeout,
            rt: Some(rt),
        })
    }

    fn path(&self, name: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(name)
        } else {
            Path::from(format!("{}/{name}", self.prefix))
        }
    }

    /// Runs `fut` on the tier's runtime within `limit`, from any thread
    /// (inside a user's runtime too): the caller blocks on a channel, not
    /// on a runtime.
    fn run<T: Send + 'static>(
        &self,
        limit: Duration,
        fut: impl Future<Output = io::Result<T>> + Send + 'static,
    ) -> io::Result<T> {
        let Some(rt) = &self.rt else {
            return Err(io::Error::other("the S3 client's runtime is gone"));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let r = tokio::time::timeout(limit, fut).await;
            let _ = tx.send(r);
        });
        match rx.recv() {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {limit:?}"),
            )),
            Err(_) => Err(io::Error::other("the S3 client's runtime stopped")),
        }
    }

    /// The time a transfer of `len` bytes may take: the timeout, plus a
    /// second per 16 MiB.
    fn limit(&self, len: u64) -> Duration {
        self.timeout + Duration::from_secs(len >> 24)
    }

    /// The lease object's holder and deadline, and its version.
    fn read_lease(&self, path: &Path) -> io::Result<Option<(String, u64, UpdateVersion)>> {
        let store = self.store.clone();
        let path = path.clone();
        self.run(self.timeout, async move {
            let got = match store.get_opts(&path, GetOptions::default()).await {
                Ok(g) => g,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(os_err(&e)),
            };
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            if got.meta.size > 4096 {
                return Ok(Some((String::new(), 0, version)));
            }
            let body = got.bytes().await.map_err(|e| os_err(&e))?;
            let text = String::from_utf8_lossy(&body);
            let mut it = text.split_whitespace();
            let holder = it.next().unwrap_or("").to_string();
            let deadline = it.next().and_then(|d| d.parse().ok()).unwrap_or(0);
            Ok(Some((holder, deadline, version)))
        })
    }

    fn put_lease(
        &self,
        path: &Path,
        holder: &str,
        ttl: Duration,
        mode: PutMode,
    ) -> io::Result<bool> {
        let store = self.store.clone();
        let path = path.clone();
        let body = format!("{holder} {}\n", unix_ms() + ttl.as_millis() as u64);
        self.run(self.timeout, async move {
            put_if(&*store, &path, PutPayload::from(body), mode).await
        })
    }
}

impl Drop for S3Backend {
    fn drop(&mut self) {
        // Never blocks: a store may be dropped inside a user's runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Backend for S3Backend {
    fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let store = self.store.clone();
        let path = self.path(prefix.trim_end_matches('/'));
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        // One level (leases sit a level below), paged by the client;
        // allowed a minute on top of the timeout, as a bucket of millions
        // of objects takes that.
        self.run(self.timeout + Duration::from_secs(60), async move {
            let listed = store
                .list_with_delimiter(Some(&path))
                .await
                .map_err(|e| os_err(&e))?;
            Ok(listed
                .objects
                .into_iter()
                .filter_map(|m| m.location.as_ref().strip_prefix(&strip).map(str::to_owned))
                .collect())
        })
    }

    fn get(&self, name: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        let store = self.store.clone();
        let path = self.path(name);
        let head = self.run(self.timeout, {
            let path = path.clone();
            async move {
                match store.get_opts(&path, GetOptions::default()).await {
                    Ok(g) => Ok(Some(g)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(os_err(&e)),
                }
            }
        })?;
        let Some(got) = head else { return Ok(None) };
        let size = got.meta.size;
        if size > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{path}: {size} bytes, more than any entry"),
            ));
        }
        let body = self.run(self.limit(size), async move {
            got.bytes().await.map_err(|e| os_err(&e))
        })?;
        Ok(Some(Vec::from(body)))
    }

    fn create(&self, name: &str, header: &[u8], value: &[u8]) -> io::Result<bool> {
        self.create_owned(name, header, bytes::Bytes::copy_from_slice(value))
    }

    fn create_bytes(&self, name: &str, header: &[u8], value: &crate::Bytes) -> io::Result<bool> {
        self.create_owned(name, header, bytes::Bytes::from_owner(value.clone()))
    }

    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> io::Result<LeaseState> {
        let path = self.path(name);
        if self.put_lease(&path, holder, ttl, PutMode::Create)? {
            return Ok(LeaseState::Acquired);
        }
        match self.read_lease(&path)? {
            // Released meanwhile: the next try takes it.
            None => Ok(LeaseState::Held),
            Some((h, deadline, _)) if h != holder && deadline > unix_ms() => Ok(LeaseState::Held),
            // Expired: taken over only if nobody changed it since it was read.
            Some((_, _, version)) => Ok(
                if self.put_lease(&path, holder, ttl, PutMode::Update(version))? {
                    LeaseState::Acquired
                } else {
                    LeaseState::Held
                },
            ),
        }
    }

    fn renew(&self, name: &str, holder: &str, ttl: Duration) -> io::Result<bool> {
        let path = self.path(name);
        match self.read_lease(&path)? {
            Some((h, _, version)) if h == holder => {
                self.put_lease(&path, holder, ttl, PutMode::Update(version))
            }
            _ => Ok(false),
        }
    }

    fn release(&self, name: &str, holder: &str) -> io::Result<()> {
        let path = self.path(name);
        if let Some((h, _, _)) = self.read_lease(&path)?
            && h == holder
        {
            let store = self.store.clone();
            self.run(self.timeout, async move {
                match store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(os_err(&e)),
                }
            })?;
        }
        Ok(())
    }
}

impl S3Backend {
    fn create_owned(&self, name: &str, header: &[u8], value: bytes::Bytes) -> io::Result<bool> {
        let store = self.store.clone();
        let path = self.path(name);
        let header = bytes::Bytes::copy_from_slice(header);
        let limit = self.limit(value.len() as u64);
        if value.len() <= MULTIPART_AT {
            return self.run(limit, async move {
                let payload = PutPayload::from_iter([header, value]);
                put_if(&*store, &path, payload, PutMode::Create).await
            });
        }
        self.run(limit, async move {
            match store.head(&path).await {
                Ok(_) => return Ok(false),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(os_err(&e)),
            }
            let mut upload = store.put_multipart(&path).await.map_err(|e| os_err(&e))?;
            let sent = async {
                // The header rides with the first part (parts but the last
                // must be at least 5 MiB).
                let first = value.len().min(PART);
                let mut part = PutPayload::from_iter([header, value.slice(..first)]);
                let mut at = first;
                loop {
                    upload.put_part(part).await?;
                    if at == value.len() {
                        break;
                    }
                    let end = (at + PART).min(value.len());
                    part = PutPayload::from(value.slice(at..end));
                    at = end;
                }
                upload.complete().await
            }
            .await;
            match sent {
                Ok(_) => Ok(true),
                Err(e) => {
                    let _ = upload.abort().await;
                    Err(os_err(&e))
                }
            }
        })
    }
}
