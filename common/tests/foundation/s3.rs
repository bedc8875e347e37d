//! The object store on a real S3-compatible server (moto, with authentication on): what the
//! services rely on when `object_store.kind = s3`.

use bytes::Bytes;
use duma_common::config::ObjectStoreSettings;
use duma_common::store::{ObjectStore, StoreError};
use duma_testkit::s3_settings;
use futures::Stream;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// `parts` chunks of 1 MiB, each a different byte.
fn mebibytes(parts: usize) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::iter((0..parts).map(|i| Ok(Bytes::from(vec![(i % 251) as u8; 1 << 20]))))
}

async fn open(settings: &ObjectStoreSettings) -> anyhow::Result<ObjectStore> {
    ObjectStore::open(settings).await
}

#[tokio::test]
async fn an_upload_of_several_multipart_parts_comes_back_whole() {
    let store = open(&s3_settings()).await.unwrap();
    // 12 MiB: three parts of the 5 MiB minimum S3 allows.
    let stored = store
        .put_stream("datasets/big.csv", mebibytes(12), 1 << 30)
        .await
        .unwrap();
    assert_eq!(stored.size_bytes, 12 << 20);
    let bytes = store.get_bytes("datasets/big.csv").await.unwrap();
    assert_eq!(bytes.len() as u64, stored.size_bytes);
    assert_eq!(hex::encode(Sha256::digest(&bytes)), stored.sha256);
}

#[tokio::test]
async fn an_upload_over_the_limit_is_aborted_and_leaves_nothing() {
    let store = open(&s3_settings()).await.unwrap();
    let error = store
        .put_stream("datasets/too-big.csv", mebibytes(8), 6 << 20)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::TooLarge { .. }), "{error}");
    assert!(matches!(
        store.get_bytes("datasets/too-big.csv").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_missing_object_is_not_found_and_deleting_twice_is_fine() {
    let store = open(&s3_settings()).await.unwrap();
    assert!(matches!(
        store.get_bytes("params/none").await,
        Err(StoreError::NotFound(path)) if path == "params/none"
    ));
    store
        .put_bytes("params/p", Bytes::from_static(b"weights"))
        .await
        .unwrap();
    assert_eq!(
        store.get_bytes("params/p").await.unwrap(),
        Bytes::from_static(b"weights")
    );
    store.delete("params/p").await.unwrap();
    store.delete("params/p").await.unwrap();
    assert!(matches!(
        store.get_bytes("params/p").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn stores_with_different_prefixes_share_a_bucket_without_seeing_each_other() {
    let first = open(&s3_settings()).await.unwrap();
    let second = open(&s3_settings()).await.unwrap();
    first
        .put_bytes("datasets/a", Bytes::from_static(b"first"))
        .await
        .unwrap();
    assert!(matches!(
        second.get_bytes("datasets/a").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_wrong_secret_key_stops_the_store_at_start_up_naming_the_credentials() {
    let mut settings = s3_settings();
    settings.secret_access_key = SecretString::from("not-the-secret".to_owned());
    let error = open(&settings)
        .await
        .err()
        .expect("the wrong key was accepted");
    let message = format!("{error:#}");
    assert!(
        message.contains("refused the credentials") && message.contains("secret_access_key"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unknown_access_key_stops_the_store_at_start_up() {
    let mut settings = s3_settings();
    settings.access_key_id = "AKIADOESNOTEXIST0000".into();
    let error = open(&settings)
        .await
        .err()
        .expect("the unknown key was accepted");
    assert!(
        format!("{error:#}").contains("refused the credentials"),
        "{error:#}"
    );
}

#[tokio::test]
async fn a_missing_bucket_stops_the_store_at_start_up() {
    let mut settings = s3_settings();
    settings.bucket = "duma-no-such-bucket".into();
    let error = open(&settings)
        .await
        .err()
        .expect("the missing bucket was accepted");
    let message = format!("{error:#}");
    assert!(
        message.contains("duma-no-such-bucket") && message.contains("does not exist"),
        "{message}"
    );
}

#[tokio::test]
async fn an_endpoint_that_does_not_answer_stops_the_store_at_start_up() {
    let mut settings = s3_settings();
    settings.endpoint = format!("http://127.0.0.1:{}", duma_testkit::free_port());
    let started = std::time::Instant::now();
    let error = open(&settings)
        .await
        .err()
        .expect("a dead endpoint was accepted");
    assert!(
        format!("{error:#}").contains("cannot use the object store"),
        "{error:#}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[tokio::test]
async fn a_worker_cache_streams_an_object_to_disk_and_refuses_a_corrupt_one() {
    use duma_common::store::ObjectCache;
    let store = open(&s3_settings()).await.unwrap();
    let stored = store
        .put_stream("datasets/cached.csv", mebibytes(12), 1 << 30)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = ObjectCache::new(dir.path(), store.clone()).unwrap();
    let path = cache
        .fetch("datasets/cached.csv", &stored.sha256, ".csv")
        .await
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), stored.sha256);
    assert!(path.to_string_lossy().ends_with(".csv"));

    // An object whose content is not what was recorded is refused, and nothing is kept.
    let error = cache
        .fetch("datasets/cached.csv", &"00".repeat(32), ".csv")
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("corrupt"), "{error:#}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec![format!("{}.csv", stored.sha256)], "{left:?}");
}
