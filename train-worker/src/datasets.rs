//! Datasets fetched from the object store once per worker, cached on local disk by checksum.

use std::path::{Path, PathBuf};

use duma_common::db::datasets::Dataset;
use duma_common::store::ObjectStore;
use sha2::{Digest, Sha256};

pub struct DatasetCache {
    dir: PathBuf,
    store: ObjectStore,
}

impl DatasetCache {
    pub fn new(dir: &Path, store: ObjectStore) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!("cannot create the dataset cache {}: {e}", dir.display())
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            store,
        })
    }

    /// The local path of a dataset's content, downloading and verifying it on first use.
    pub async fn path(&self, dataset: &Dataset) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(&dataset.sha256);
        if tokio::fs::metadata(&path)
            .await
            .is_ok_and(|m| m.len() == dataset.size_bytes as u64)
        {
            return Ok(path);
        }
        let bytes = self.store.get_bytes(&dataset.store_path).await?;
        let actual = hex::encode(Sha256::digest(&bytes));
        anyhow::ensure!(
            actual == dataset.sha256,
            "dataset {} is corrupt in the object store (sha256 {actual}, expected {})",
            dataset.id,
            dataset.sha256
        );
        // Write aside and rename, so a concurrent reader never sees half a file.
        let partial = self.dir.join(format!(
            "{}.{}.partial",
            dataset.sha256,
            uuid::Uuid::new_v4().simple()
        ));
        tokio::fs::write(&partial, &bytes).await?;
        tokio::fs::rename(&partial, &path).await?;
        Ok(path)
    }
}
