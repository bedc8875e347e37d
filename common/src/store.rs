//! The object store for datasets, template sources and trained parameters: the local filesystem
//! by default, S3-compatible storage with the `s3` feature. Every write records size and sha256.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore as _, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::config::{ObjectStoreKind, ObjectStoreSettings};

/// How many parts of a multipart upload may be in flight at once (bounds memory per upload).
const MAX_PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub path: String,
    pub size_bytes: u64,
    /// Lower-case hex.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading the upload failed: {0}")]
    Source(String),
    #[error("object {0} does not exist")]
    NotFound(String),
    #[error("object store error: {0}")]
    Store(#[from] object_store::Error),
}

#[derive(Clone)]
pub struct ObjectStore {
    inner: Arc<dyn object_store::ObjectStore>,
    /// Where the objects live, for error messages (`s3://bucket/prefix at endpoint`).
    location: String,
}

impl ObjectStore {
    /// The store the settings name, checked to be reachable and to accept the credentials: a
    /// wrong key, a missing bucket or an unreachable endpoint stops a service at start-up with
    /// the reason, instead of failing its first upload.
    pub async fn open(settings: &ObjectStoreSettings) -> anyhow::Result<Self> {
        let store = Self::from_settings(settings)?;
        store.check_access().await?;
        Ok(store)
    }

    /// The store the settings name, not yet contacted (see [`ObjectStore::open`]).
    pub fn from_settings(settings: &ObjectStoreSettings) -> anyhow::Result<Self> {
        match settings.kind {
            ObjectStoreKind::Local => {
                std::fs::create_dir_all(&settings.root).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot create object store root {}: {e}",
                        settings.root.display()
                    )
                })?;
                Ok(Self {
                    inner: Arc::new(object_store::local::LocalFileSystem::new_with_prefix(
                        &settings.root,
                    )?),
                    location: settings.root.display().to_string(),
                })
            }
            ObjectStoreKind::S3 => s3(settings),
        }
    }

    /// Proves the endpoint answers, the credentials are accepted (a HEAD of a key that need
    /// not exist: S3 answers 403 to a bad key before looking) and the bucket exists (a listing
    /// of the top level).
    async fn check_access(&self) -> anyhow::Result<()> {
        let probe = self.inner.head(&Path::from(".duma-access-check")).await;
        let listing = match probe {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {
                self.inner.list_with_delimiter(None).await.map(|_| ())
            }
            Err(error) => Err(error),
        };
        let s3 = self.location.starts_with("s3://");
        match listing {
            Ok(()) => Ok(()),
            Err(
                error @ (object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }),
            ) if s3 => Err(anyhow::anyhow!(
                "the object store {} refused the credentials (object_store.access_key_id and \
                 object_store.secret_access_key, or AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY): {error}",
                self.location
            )),
            Err(error @ object_store::Error::NotFound { .. }) if s3 => Err(anyhow::anyhow!(
                "the object store's bucket {} does not exist (create it first): {error}",
                self.location
            )),
            Err(error) => Err(anyhow::anyhow!(
                "cannot use the object store {}: {error}",
                self.location
            )),
        }
    }

    /// Streams `body` into `path` without holding it in memory, stopping with
    /// [`StoreError::TooLarge`] (and storing nothing) once it passes `limit` bytes.
    pub async fn put_stream<S, E>(
        &self,
        path: &str,
        body: S,
        limit: u64,
    ) -> Result<StoredObject, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let location = Path::from(path);
        let upload = self.inner.put_multipart(&location).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size(limit));
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    let _ = writer.abort().await;
                    return Err(StoreError::Source(error.to_string()));
                }
            };
            size += chunk.len() as u64;
            if size > limit {
                let _ = writer.abort().await;
                return Err(StoreError::TooLarge { limit });
            }
            hasher.update(&chunk);
            if let Err(error) = writer.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await {
                return Err(error.into());
            }
            writer.put(chunk);
        }
        writer.finish().await?;
        Ok(StoredObject {
            path: path.to_owned(),
            size_bytes: size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Stores a small object held in memory.
    pub async fn put_bytes(&self, path: &str, bytes: Bytes) -> Result<StoredObject, StoreError> {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let size_bytes = bytes.len() as u64;
        self.inner.put(&Path::from(path), bytes.into()).await?;
        Ok(StoredObject {
            path: path.to_owned(),
            size_bytes,
            sha256,
        })
    }

    pub async fn get_bytes(&self, path: &str) -> Result<Bytes, StoreError> {
        let result = self
            .inner
            .get(&Path::from(path))
            .await
            .map_err(|e| not_found(path, e))?;
        Ok(result.bytes().await?)
    }

    /// The object's content as a stream of chunks, for responses and downloads.
    pub async fn get_stream(
        &self,
        path: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, StoreError>> + use<>, StoreError> {
        let result = self
            .inner
            .get(&Path::from(path))
            .await
            .map_err(|e| not_found(path, e))?;
        Ok(result.into_stream().map_err(StoreError::from))
    }

    pub async fn delete(&self, path: &str) -> Result<(), StoreError> {
        match self.inner.delete(&Path::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

/// Objects fetched from the store once per worker (datasets, template sources, parameters),
/// cached on local disk by checksum.
#[derive(Clone)]
pub struct ObjectCache {
    dir: PathBuf,
    store: ObjectStore,
}

impl ObjectCache {
    pub fn new(dir: &std::path::Path, store: ObjectStore) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create the cache {}: {e}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            store,
        })
    }

    /// The local path of an object's content, downloading and verifying it on first use.
    /// `extension` is kept on the file (Python imports need `.py`).
    pub async fn fetch(
        &self,
        store_path: &str,
        sha256: &str,
        extension: &str,
    ) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(format!("{sha256}{extension}"));
        if tokio::fs::metadata(&path).await.is_ok() {
            return Ok(path);
        }
        // Streamed to a file aside (never whole in memory: datasets run to gigabytes), hashed on
        // the way, and renamed into place once whole and verified, so a concurrent reader never
        // sees half a file or a corrupt one.
        let partial = self.dir.join(format!(
            "{sha256}.{}.partial",
            uuid::Uuid::new_v4().simple()
        ));
        let written = self.download(store_path, &partial).await;
        let actual = match written {
            Ok(actual) => actual,
            Err(error) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(error);
            }
        };
        if actual != sha256 {
            let _ = tokio::fs::remove_file(&partial).await;
            anyhow::bail!(
                "{store_path} is corrupt in the object store (sha256 {actual}, expected {sha256})"
            );
        }
        tokio::fs::rename(&partial, &path).await?;
        Ok(path)
    }

    /// Writes the object at `store_path` to `file`; returns its sha256 (lower-case hex).
    async fn download(&self, store_path: &str, file: &std::path::Path) -> anyhow::Result<String> {
        use tokio::io::AsyncWriteExt;
        let mut chunks = std::pin::pin!(self.store.get_stream(store_path).await?);
        let mut out = tokio::fs::File::create(file).await?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
        Ok(hex::encode(hasher.finalize()))
    }
}

/// S3 multipart uploads take at most 10,000 parts of 5 MiB to 5 GiB (the last may be smaller):
/// parts grow with the limit so that an upload of `limit` bytes fits (up to S3's 48.8 TiB).
fn part_size(limit: u64) -> usize {
    const MIN_PART: u64 = 5 << 20;
    const MAX_PART: u64 = 5 << 30;
    const MAX_PARTS: u64 = 10_000;
    let size = limit.div_ceil(MAX_PARTS).clamp(MIN_PART, MAX_PART);
    usize::try_from(size).unwrap_or(usize::MAX)
}

fn s3(settings: &ObjectStoreSettings) -> anyhow::Result<ObjectStore> {
    use object_store::aws::AmazonS3Builder;
    use object_store::{BackoffConfig, RetryConfig};
    use secrecy::ExposeSecret;

    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&settings.bucket)
        // A request that keeps failing is reported within half a minute; the job or upload
        // that needed it fails with the reason instead of hanging.
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 4,
            retry_timeout: std::time::Duration::from_secs(30),
        });
    let mut endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    if !settings.endpoint.is_empty() {
        endpoint.clone_from(&settings.endpoint);
        builder = builder.with_endpoint(&settings.endpoint);
    }
    if endpoint.starts_with("http://") {
        builder = builder.with_allow_http(true);
    }
    if !settings.region.is_empty() {
        builder = builder.with_region(&settings.region);
    }
    if !settings.access_key_id.is_empty() {
        builder = builder.with_access_key_id(&settings.access_key_id);
    }
    let secret = settings.secret_access_key.expose_secret();
    if !secret.is_empty() {
        builder = builder.with_secret_access_key(secret);
    }
    let bucket = builder.build()?;
    let prefix = settings.prefix.trim_end_matches('/');
    let location = format!(
        "s3://{}/{prefix} at {}",
        settings.bucket,
        if endpoint.is_empty() {
            "AWS"
        } else {
            &endpoint
        }
    );
    let inner: Arc<dyn object_store::ObjectStore> = if prefix.is_empty() {
        Arc::new(bucket)
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(bucket, prefix))
    };
    Ok(ObjectStore { inner, location })
}

fn not_found(path: &str, error: object_store::Error) -> StoreError {
    match error {
        object_store::Error::NotFound { .. } => StoreError::NotFound(path.to_owned()),
        other => StoreError::Store(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &tempfile::TempDir) -> ObjectStore {
        ObjectStore::from_settings(&ObjectStoreSettings {
            kind: ObjectStoreKind::Local,
            root: dir.path().to_path_buf(),
            ..ObjectStoreSettings::default()
        })
        .unwrap()
    }

    fn chunks(total: usize) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        futures::stream::iter((0..total).map(|i| Ok(Bytes::from(vec![(i % 251) as u8; 64 * 1024]))))
    }

    #[tokio::test]
    async fn streamed_upload_records_size_and_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let stored = store
            .put_stream("datasets/a.csv", chunks(100), 1 << 30)
            .await
            .unwrap();
        assert_eq!(stored.size_bytes, 100 * 64 * 1024);
        let bytes = store.get_bytes("datasets/a.csv").await.unwrap();
        assert_eq!(bytes.len() as u64, stored.size_bytes);
        assert_eq!(hex::encode(Sha256::digest(&bytes)), stored.sha256);
    }

    #[tokio::test]
    async fn oversized_upload_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let err = store
            .put_stream("datasets/big", chunks(10), 64 * 1024 * 3)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
        assert!(matches!(
            store.get_bytes("datasets/big").await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn small_objects_round_trip_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let stored = store
            .put_bytes("p/x", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(stored.size_bytes, 5);
        assert_eq!(
            store.get_bytes("p/x").await.unwrap(),
            Bytes::from_static(b"hello")
        );
        store.delete("p/x").await.unwrap();
        store.delete("p/x").await.unwrap();
        assert!(matches!(
            store.get_bytes("p/x").await,
            Err(StoreError::NotFound(_))
        ));
    }
}
