//! Single flight per key: concurrent callers with one key take turns, so the first does
//! the work (a render, an origin request) and the others find its result. Used by the
//! origin (one render per variant) and by the local edge (one origin request per cache
//! key, as CloudFront collapses misses).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// One async lock per key, created on demand and forgotten when nobody holds or waits.
#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    pub fn new() -> KeyedLocks {
        KeyedLocks::default()
    }

    /// Run `work` while holding `key`'s lock: no two `work`s for one key overlap. The key
    /// is forgotten however the call ends, also when its future is dropped (a deadline).
    pub async fn run<T, F>(&self, key: &str, work: impl FnOnce() -> F) -> T
    where
        F: Future<Output = T>,
    {
        let entry = Entry {
            locks: self,
            key,
            lock: {
                let mut locks = self.locks.lock().unwrap();
                locks.entry(key.to_string()).or_default().clone()
            },
        };
        let _turn = entry.lock.lock().await;
        work().await
    }

    /// Keys with a lock right now (for tests: the map does not grow without bound).
    pub fn len(&self) -> usize {
        self.locks.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One caller's handle on a key's lock; dropping it forgets the key when nobody else holds
/// or waits on it.
struct Entry<'a> {
    locks: &'a KeyedLocks,
    key: &'a str,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        let mut locks = self.locks.locks.lock().unwrap_or_else(|e| e.into_inner());
        // The map's handle and ours: nobody else holds or waits on it.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_key_never_overlaps_and_the_map_empties() {
        let locks = Arc::new(KeyedLocks::new());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (locks, inside, most) = (locks.clone(), inside.clone(), most.clone());
                tokio::spawn(async move {
                    locks
                        .run("k", || async {
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            inside.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert!(locks.is_empty());
    }

    #[tokio::test]
    async fn a_call_dropped_at_a_deadline_forgets_its_key() {
        // Each timed-out key used to stay in the map for good: a slow store made it grow
        // with every distinct variant that timed out.
        let locks = KeyedLocks::new();
        for key in ["a", "b", "c"] {
            let never = locks.run(key, std::future::pending::<()>);
            let timed_out = tokio::time::timeout(Duration::from_millis(5), never).await;
            assert!(timed_out.is_err());
        }
        assert!(locks.is_empty(), "{} keys left", locks.len());
        // A waiter dropped while another holds the key: the holder still forgets it.
        let held = locks.run("k", || tokio::time::sleep(Duration::from_millis(30)));
        let waiter = locks.run("k", || async {});
        let (_, dropped) =
            tokio::join!(held, tokio::time::timeout(Duration::from_millis(5), waiter));
        assert!(dropped.is_err());
        assert!(locks.is_empty(), "{} keys left", locks.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn different_keys_run_at_once() {
        let locks = Arc::new(KeyedLocks::new());
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let run = |key: &'static str| {
            let (locks, barrier) = (locks.clone(), barrier.clone());
            tokio::spawn(async move {
                locks
                    .run(key, || async {
                        barrier.wait().await;
                    })
                    .await
            })
        };
        let (a, b) = (run("a"), run("b"));
        // Both pass the barrier only if neither waits for the other's lock.
        tokio::time::timeout(Duration::from_secs(5), async {
            a.await.unwrap();
            b.await.unwrap();
        })
        .await
        .expect("two keys must not serialise");
    }
}
