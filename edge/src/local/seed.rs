//! Sample masters for an empty local bucket, so the first `edge serve` has something to
//! show. The pictures come from the `samples` crate, which the generator uses too.

use bytes::Bytes;

use crate::spec::Format;
use crate::store::{ObjectMeta, PutOptions, Store, StoreError};

pub use samples::today_utc;

/// Put the sample masters for `date` into an empty store (nothing happens otherwise);
/// returns the keys written. Rendering runs on blocking threads, all at once.
pub async fn seed_if_empty(store: &dyn Store, date: &str) -> Result<Vec<String>, StoreError> {
    if !store.list("").await?.is_empty() {
        return Ok(Vec::new());
    }
    let renders: Vec<_> = samples::sample_set(date)
        .into_iter()
        .map(|sample| {
            let key = sample.key.clone();
            (key, tokio::task::spawn_blocking(move || sample.png()))
        })
        .collect();
    let mut written = Vec::new();
    for (key, png) in renders {
        let png = png
            .await
            .map_err(|e| StoreError::Io(format!("rendering sample {key} failed: {e}")))?;
        let meta = ObjectMeta {
            content_type: Some(Format::Png.content_type().to_string()),
            ..ObjectMeta::default()
        };
        store
            .put(
                &key,
                Bytes::from(png),
                PutOptions {
                    meta,
                    if_none_match: true,
                },
            )
            .await?;
        written.push(key);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[tokio::test]
    async fn an_empty_store_gets_the_sample_set_and_a_full_one_nothing() {
        let store = MemStore::new();
        let written = seed_if_empty(&store, "2026-11-25").await.unwrap();
        let expected: Vec<String> = samples::sample_set("2026-11-25")
            .into_iter()
            .map(|s| s.key)
            .collect();
        assert_eq!(written, expected);
        let first = store.get(&expected[0]).await.unwrap().unwrap();
        assert_eq!(first.body, samples::sample_set("2026-11-25")[0].png());
        assert_eq!(first.head.meta.content_type.as_deref(), Some("image/png"));
        assert!(seed_if_empty(&store, "2026-11-26")
            .await
            .unwrap()
            .is_empty());
    }
}
