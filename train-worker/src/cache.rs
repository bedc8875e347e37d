//! Objects fetched from the object store once per worker (datasets, template sources), cached on
//! local disk by checksum.

use std::path::{Path, PathBuf};

use duma_common::store::ObjectStore;
use sha2::{Digest, Sha256};

pub struct ObjectCache {
    dir: PathBuf,
    store: ObjectStore,
}

impl ObjectCache {
    pub fn new(dir: &Path, store: ObjectStore) -> anyhow::Result<Self> {
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
        let bytes = self.store.get_bytes(store_path).await?;
        let actual = hex::encode(Sha256::digest(&bytes));
        anyhow::ensure!(
            actual == sha256,
            "{store_path} is corrupt in the object store (sha256 {actual}, expected {sha256})"
        );
        // Write aside and rename, so a concurrent reader never sees half a file.
        let partial = self.dir.join(format!(
            "{sha256}.{}.partial",
            uuid::Uuid::new_v4().simple()
        ));
        tokio::fs::write(&partial, &bytes).await?;
        tokio::fs::rename(&partial, &path).await?;
        Ok(path)
    }
}
