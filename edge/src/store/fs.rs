//! `FsStore`: a bucket on the local filesystem (the default of `edge serve`).
//!
//! Layout under the root:
//! - `<key>`: the object's bytes, exactly, so masters can be dropped in by hand.
//! - `.imgedge-meta/objects/<key>`: a JSON sidecar (ETag, size, headers, user metadata)
//!   and the identity of the body file it describes (inode, size, mtime).
//! - `.imgedge-meta/locks/NN`: 64 striped lock files (flock) that make check-and-write
//!   atomic across threads and processes.
//!
//! Writes go to a temp file (`.imgedge-tmp-*`) in the destination directory and are
//! renamed into place, sidecar first, under the key's exclusive lock; reads take the
//! shared lock, so a reader always sees a body and sidecar of the same write. A sidecar
//! whose recorded identity does not match the body (crash between the two renames, file
//! replaced by hand) is ignored: the object is then served like a hand-placed file, with
//! its content MD5 as ETag and a content type from its extension. See docs/stores.md.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{
    content_etag, Object, ObjectHead, ObjectMeta, PutOptions, PutOutcome, Store, StoreError,
};

/// Directory under the root reserved for sidecars and locks; never an object.
const META_DIR: &str = ".imgedge-meta";
/// Prefix of file names reserved for the store (temp files); never an object.
const RESERVED_NAME_PREFIX: &str = ".imgedge-";
const TEMP_PREFIX: &str = ".imgedge-tmp-";
/// Striped locks keep the lock directory bounded whatever the number of keys.
const LOCK_STRIPES: u8 = 64;

#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

/// The sidecar of one object: its headers and the identity of the body it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Sidecar {
    etag: String,
    size: u64,
    /// Identity of the body file this sidecar was written with. A body replaced by any
    /// other writer has another inode or mtime (we set a unique mtime on each write).
    ino: u64,
    mtime_ns: i128,
    content_type: Option<String>,
    cache_control: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

impl FsStore {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<FsStore, StoreError> {
        let root = root.into();
        fs::create_dir_all(root.join(META_DIR).join("locks"))
            .and_then(|()| fs::create_dir_all(root.join(META_DIR).join("objects")))
            .map_err(|e| io_err(&format!("creating store root {}", root.display()), e))?;
        Ok(FsStore { root })
    }

    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// Run a blocking filesystem operation off the async runtime.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&FsStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Io(format!("filesystem task failed: {e}")))?
    }

    fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn sidecar_path(&self, key: &str) -> PathBuf {
        // The sidecar tree mirrors the object tree exactly, so it can only conflict
        // (file vs directory) where the object tree itself would.
        self.root.join(META_DIR).join("objects").join(key)
    }

    /// Open (and lock) the lock stripe of `key`; the lock is released when the file drops.
    fn lock(&self, key: &str, exclusive: bool) -> Result<File, StoreError> {
        use md5::{Digest, Md5};
        let stripe = Md5::digest(key.as_bytes())[0] % LOCK_STRIPES;
        let path = self
            .root
            .join(META_DIR)
            .join("locks")
            .join(format!("{stripe:02}"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_err("opening lock file", e))?;
        if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        }
        .map_err(|e| io_err("locking", e))?;
        Ok(file)
    }

    /// Read sidecar and body under the shared lock; `with_body` false reads only what
    /// `head` needs (and hashes the body only when there is no valid sidecar).
    fn read(&self, key: &str, with_body: bool) -> Result<Option<Object>, StoreError> {
        if is_reserved(key) {
            // A valid S3 key; this store just never holds an object there.
            return Ok(None);
        }
        check_key(key)?;
        let _lock = self.lock(key, false)?;
        let path = self.object_path(key);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(io_err("opening object", e)),
        };
        let stat = file.metadata().map_err(|e| io_err("stat of object", e))?;
        if !stat.is_file() {
            // A directory holding other keys is not itself an object (as in S3).
            return Ok(None);
        }
        let sidecar = self.read_sidecar(key)?.filter(|s| s.describes(&stat));
        let body = if with_body || sidecar.is_none() {
            let mut buf = Vec::with_capacity(stat.len() as usize);
            file.read_to_end(&mut buf)
                .map_err(|e| io_err("reading object", e))?;
            Bytes::from(buf)
        } else {
            Bytes::new()
        };
        let head = match sidecar {
            Some(s) => ObjectHead {
                etag: s.etag,
                size: s.size,
                meta: ObjectMeta {
                    content_type: s.content_type,
                    cache_control: s.cache_control,
                    metadata: s.metadata,
                },
            },
            // Placed by hand (or its sidecar is stale): describe the bytes themselves.
            None => ObjectHead {
                etag: content_etag(&body),
                size: body.len() as u64,
                meta: ObjectMeta {
                    content_type: mime_guess::from_path(key).first_raw().map(str::to_string),
                    cache_control: None,
                    metadata: BTreeMap::new(),
                },
            },
        };
        let body = if with_body { body } else { Bytes::new() };
        Ok(Some(Object { head, body }))
    }

    /// Up to `n` bytes from the start of the object, under the shared lock.
    fn read_first_bytes(&self, key: &str, n: u64) -> Result<Option<Bytes>, StoreError> {
        if is_reserved(key) {
            return Ok(None);
        }
        check_key(key)?;
        let _lock = self.lock(key, false)?;
        let file = match File::open(self.object_path(key)) {
            Ok(f) => f,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(io_err("opening object", e)),
        };
        if !file
            .metadata()
            .map_err(|e| io_err("stat of object", e))?
            .is_file()
        {
            return Ok(None);
        }
        let mut buf = Vec::new();
        file.take(n)
            .read_to_end(&mut buf)
            .map_err(|e| io_err("reading object", e))?;
        Ok(Some(Bytes::from(buf)))
    }

    fn read_sidecar(&self, key: &str) -> Result<Option<Sidecar>, StoreError> {
        match fs::read(self.sidecar_path(key)) {
            // An unreadable sidecar (e.g. truncated by hand) is treated as absent.
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(io_err("reading sidecar", e)),
        }
    }

    fn write(&self, key: &str, body: &[u8], opts: PutOptions) -> Result<PutOutcome, StoreError> {
        check_key(key)?;
        let path = self.object_path(key);
        let sidecar_path = self.sidecar_path(key);
        let dir = parent(&path)?;
        let sidecar_dir = parent(&sidecar_path)?;
        fs::create_dir_all(dir).map_err(|e| io_err("creating object directory", e))?;
        fs::create_dir_all(sidecar_dir).map_err(|e| io_err("creating sidecar directory", e))?;

        // All the slow work happens before the lock: bytes on disk, then only renames.
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(dir)
            .map_err(|e| io_err("creating temp file", e))?;
        tmp.write_all(body)
            .map_err(|e| io_err("writing temp file", e))?;
        // A unique mtime makes (inode, mtime) identify this write even if the inode
        // number is reused right after an overwrite frees it.
        tmp.as_file()
            .set_modified(unique_time())
            .map_err(|e| io_err("setting mtime", e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| io_err("syncing temp file", e))?;
        let stat = tmp
            .as_file()
            .metadata()
            .map_err(|e| io_err("stat of temp file", e))?;
        let etag = content_etag(body);
        let sidecar = Sidecar {
            etag: etag.clone(),
            size: body.len() as u64,
            ino: stat.ino(),
            mtime_ns: mtime_ns(&stat),
            content_type: opts.meta.content_type,
            cache_control: opts.meta.cache_control,
            metadata: opts.meta.metadata,
        };
        let mut sidecar_tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(sidecar_dir)
            .map_err(|e| io_err("creating sidecar temp file", e))?;
        sidecar_tmp
            .write_all(&serde_json::to_vec(&sidecar).expect("sidecar serialises"))
            .map_err(|e| io_err("writing sidecar", e))?;

        let _lock = self.lock(key, true)?;
        if opts.if_none_match {
            match fs::metadata(&path) {
                Ok(m) if m.is_file() => return Ok(PutOutcome::AlreadyExists),
                Ok(_) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(io_err("stat of object", e)),
            }
        }
        // Sidecar first: a new key has no body until the second rename, so nobody ever
        // sees it without its metadata; a crash in between leaves a sidecar that
        // describes no body and is ignored.
        sidecar_tmp
            .persist(&sidecar_path)
            .map_err(|e| io_err("renaming sidecar into place", e.error))?;
        tmp.persist(&path)
            .map_err(|e| io_err("renaming object into place", e.error))?;
        Ok(PutOutcome::Written { etag })
    }

    fn list_sync(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // Start at the deepest directory the prefix names; the rest is a string filter
        // (a plain prefix, as in S3: `outputs/a` matches `outputs/ab.png`).
        let base = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        if !base.is_empty() {
            check_key(base.trim_end_matches('/'))?;
        }
        let mut keys = Vec::new();
        walk(&self.root.join(base), base, prefix, &mut keys)?;
        keys.sort();
        Ok(keys)
    }

    fn delete_prefix_sync(&self, prefix: &str) -> Result<usize, StoreError> {
        let keys = self.list_sync(prefix)?;
        let mut deleted = 0;
        for key in &keys {
            let _lock = self.lock(key, true)?;
            match fs::remove_file(self.object_path(key)) {
                Ok(()) => deleted += 1,
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(io_err("deleting object", e)),
            }
            match fs::remove_file(self.sidecar_path(key)) {
                Ok(()) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(io_err("deleting sidecar", e)),
            }
        }
        for key in &keys {
            self.prune_empty_dirs(key);
        }
        Ok(deleted)
    }

    /// Remove directories left empty by a delete (best effort, like S3 "folders").
    fn prune_empty_dirs(&self, key: &str) {
        for top in [self.root.clone(), self.root.join(META_DIR).join("objects")] {
            let mut dir = top.join(key);
            while dir.pop() && dir != top {
                if fs::remove_dir(&dir).is_err() {
                    break;
                }
            }
        }
    }
}

impl Sidecar {
    fn describes(&self, stat: &fs::Metadata) -> bool {
        self.ino == stat.ino() && self.size == stat.len() && self.mtime_ns == mtime_ns(stat)
    }
}

fn walk(dir: &Path, rel: &str, prefix: &str, keys: &mut Vec<String>) -> Result<(), StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_missing(&e) || e.kind() == ErrorKind::NotADirectory => return Ok(()),
        Err(e) => return Err(io_err("listing directory", e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err("listing directory", e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue; // not UTF-8: cannot be a key
        };
        if name.starts_with(RESERVED_NAME_PREFIX) {
            continue; // sidecars, locks, temp files of writes in flight or crashed
        }
        let key = format!("{rel}{name}");
        let file_type = entry
            .file_type()
            .map_err(|e| io_err("listing directory", e))?;
        if file_type.is_dir() {
            let sub = format!("{key}/");
            // Descend only where keys under the prefix can be.
            if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                walk(&entry.path(), &sub, prefix, keys)?;
            }
        } else if file_type.is_file() && key.starts_with(prefix) {
            keys.push(key);
        }
    }
    Ok(())
}

/// Reject keys that could leave the root or collide with the store's own files. Keys
/// are validated before any store call; this is defence in depth.
fn check_key(key: &str) -> Result<(), StoreError> {
    let bad = |why: &str| Err(StoreError::InvalidKey(format!("{key:?}: {why}")));
    if key.is_empty() {
        return bad("empty key");
    }
    if key.starts_with('/') {
        return bad("absolute path");
    }
    if key.contains('\\') {
        return bad("backslash");
    }
    if key.chars().any(char::is_control) {
        return bad("control character");
    }
    for segment in key.split('/') {
        match segment {
            "" => return bad("empty path segment"),
            "." | ".." => return bad("dot segment"),
            _ => {}
        }
    }
    if is_reserved(key) {
        return bad("names starting with .imgedge- are reserved by the store");
    }
    Ok(())
}

/// A key with a path segment the store keeps its own files under.
fn is_reserved(key: &str) -> bool {
    key.split('/')
        .any(|segment| segment.starts_with(RESERVED_NAME_PREFIX))
}

fn parent(path: &Path) -> Result<&Path, StoreError> {
    path.parent()
        .ok_or_else(|| StoreError::InvalidKey(format!("{} has no parent", path.display())))
}

fn is_missing(e: &std::io::Error) -> bool {
    // NotADirectory: a path segment is a file (`a` exists, asking for `a/b`).
    // InvalidFilename: a segment longer than the filesystem allows (ENAMETOOLONG; S3 keys
    // may have 1024-byte segments), which therefore holds no object.
    matches!(
        e.kind(),
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::InvalidFilename
    )
}

fn io_err(what: &str, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what}: {e}"))
}

fn mtime_ns(stat: &fs::Metadata) -> i128 {
    i128::from(stat.mtime()) * 1_000_000_000 + i128::from(stat.mtime_nsec())
}

/// Now, with random nanoseconds: two writes (even in one clock tick, or from two
/// processes) then practically never share an mtime.
fn unique_time() -> SystemTime {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    UNIX_EPOCH + std::time::Duration::new(now.as_secs(), fastrand::u32(0..1_000_000_000))
}

#[async_trait]
impl Store for FsStore {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let key = key.to_string();
        self.blocking(move |s| s.read(&key, true)).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        let key = key.to_string();
        self.blocking(move |s| Ok(s.read(&key, false)?.map(|o| o.head)))
            .await
    }
    async fn get_first_bytes(&self, key: &str, n: u64) -> Result<Option<Bytes>, StoreError> {
        let key = key.to_string();
        self.blocking(move |s| s.read_first_bytes(&key, n)).await
    }
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<PutOutcome, StoreError> {
        let key = key.to_string();
        self.blocking(move |s| s.write(&key, &body, opts)).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = prefix.to_string();
        self.blocking(move |s| s.list_sync(&prefix)).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        let prefix = prefix.to_string();
        self.blocking(move |s| s.delete_prefix_sync(&prefix)).await
    }
    fn describe(&self) -> String {
        format!("fs:{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (tempfile::TempDir, FsStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path().join("bucket")).unwrap();
        (dir, store)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn passes_the_store_conformance_suite() {
        let (_dir, store) = temp_store();
        crate::store::conformance::run(&store).await;
    }
}

#[cfg(test)]
mod fs_tests {
    use super::*;

    fn temp_store() -> (tempfile::TempDir, FsStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path().join("bucket")).unwrap();
        (dir, store)
    }

    fn with_meta(n: &str) -> PutOptions {
        PutOptions {
            meta: ObjectMeta {
                content_type: Some("image/webp".into()),
                cache_control: None,
                metadata: [("n".to_string(), n.to_string())].into(),
            },
            if_none_match: false,
        }
    }

    #[tokio::test]
    async fn keys_that_could_escape_the_root_or_hit_reserved_files_are_rejected() {
        let (dir, store) = temp_store();
        std::fs::write(dir.path().join("secret.png"), b"outside").unwrap();
        for key in [
            "../secret.png",
            "a/../../secret.png",
            "/etc/passwd",
            "a\\..\\b.png",
            "a\0b.png",
            "a//b.png",
            "a/./b.png",
            "",
            "a/",
        ] {
            let invalid = |r: Result<_, StoreError>| matches!(r, Err(StoreError::InvalidKey(_)));
            assert!(invalid(store.get(key).await.map(|_| ())), "get {key:?}");
            assert!(invalid(store.head(key).await.map(|_| ())), "head {key:?}");
            let put = store.put(key, Bytes::from_static(b"x"), PutOptions::default());
            assert!(invalid(put.await.map(|_| ())), "put {key:?}");
        }
        // Valid S3 keys that name the store's own files: no object there, never writable.
        for key in [
            ".imgedge-meta/locks/00",
            ".imgedge-meta/objects/x.png",
            "dir/.imgedge-tmp-abc",
        ] {
            assert!(store.get(key).await.unwrap().is_none(), "get {key:?}");
            assert!(store.head(key).await.unwrap().is_none(), "head {key:?}");
            let put = store.put(key, Bytes::from_static(b"x"), PutOptions::default());
            assert!(
                matches!(put.await, Err(StoreError::InvalidKey(_))),
                "put {key:?}"
            );
        }
        assert!(matches!(
            store.list("../").await,
            Err(StoreError::InvalidKey(_))
        ));
        assert!(matches!(
            store.delete_prefix(".imgedge-meta/").await,
            Err(StoreError::InvalidKey(_))
        ));
        assert_eq!(
            std::fs::read(dir.path().join("secret.png")).unwrap(),
            b"outside"
        );
        assert_eq!(store.list("").await.unwrap(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_segment_longer_than_the_filesystem_allows_holds_no_object() {
        let (_dir, store) = temp_store();
        let key = format!("outputs/{}.png", "a".repeat(300));
        assert!(store.get(&key).await.unwrap().is_none());
        assert!(store.head(&key).await.unwrap().is_none());
        assert!(store.list(&format!("{key}/")).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_file_dropped_in_by_hand_is_an_object() {
        let (_dir, store) = temp_store();
        let path = store.root().join("outputs/2025-02-01/image_001.png");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"hand placed").unwrap();
        let obj = store
            .get("outputs/2025-02-01/image_001.png")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&obj.body[..], b"hand placed");
        assert_eq!(obj.head.etag, content_etag(b"hand placed"));
        assert_eq!(obj.head.size, 11);
        assert_eq!(obj.head.meta.content_type.as_deref(), Some("image/png"));
        assert_eq!(
            store
                .head("outputs/2025-02-01/image_001.png")
                .await
                .unwrap(),
            Some(obj.head)
        );
        assert_eq!(
            store.list("outputs/").await.unwrap(),
            vec!["outputs/2025-02-01/image_001.png"]
        );
        // A directory is not an object.
        assert!(store.get("outputs/2025-02-01").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_file_replaced_by_hand_loses_its_stale_sidecar() {
        let (_dir, store) = temp_store();
        store
            .put("m.png", Bytes::from_static(b"written"), with_meta("1"))
            .await
            .unwrap();
        // Same size, replaced in place, as an editor or `cp` would.
        std::fs::write(store.root().join("m.png"), b"edited!").unwrap();
        let obj = store.get("m.png").await.unwrap().unwrap();
        assert_eq!(&obj.body[..], b"edited!");
        assert_eq!(obj.head.etag, content_etag(b"edited!"));
        assert_eq!(obj.head.meta.metadata, BTreeMap::new());
        assert_eq!(obj.head.meta.content_type.as_deref(), Some("image/png"));
        assert_eq!(store.head("m.png").await.unwrap(), Some(obj.head));
    }

    #[tokio::test]
    async fn leftovers_of_a_crash_are_never_objects() {
        let (_dir, store) = temp_store();
        store
            .put("a/b.png", Bytes::from_static(b"ok"), PutOptions::default())
            .await
            .unwrap();
        // A temp body and a sidecar renamed into place just before a crash.
        std::fs::write(store.root().join("a/.imgedge-tmp-Xy12"), b"half").unwrap();
        std::fs::write(
            store.root().join(".imgedge-meta/objects/a/c.png"),
            br#"{"etag":"\"x\"","size":1,"ino":1,"mtime_ns":1,"content_type":null,"cache_control":null}"#,
        )
        .unwrap();
        assert_eq!(store.list("").await.unwrap(), vec!["a/b.png"]);
        assert!(store.get("a/c.png").await.unwrap().is_none());
        assert!(store.head("a/c.png").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn successful_writes_leave_no_temp_files() {
        let (_dir, store) = temp_store();
        for i in 0..5 {
            let opts = PutOptions {
                if_none_match: i % 2 == 0,
                ..with_meta(&i.to_string())
            };
            store
                .put("d/v.webp", Bytes::from(vec![i; 10]), opts)
                .await
                .unwrap();
        }
        let mut names = Vec::new();
        for dir in [
            store.root().join("d"),
            store.root().join(".imgedge-meta/objects/d"),
        ] {
            for e in std::fs::read_dir(dir).unwrap() {
                names.push(e.unwrap().file_name().into_string().unwrap());
            }
        }
        assert_eq!(names, vec!["v.webp", "v.webp"]);
    }

    /// Writers in separate store instances (separate lock handles, as separate processes
    /// would have) overwrite one key while readers check every read is one whole write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn readers_never_see_a_torn_object_while_writers_overwrite() {
        let (dir, store) = temp_store();
        let root = dir.path().join("bucket");
        let bodies: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 1000 + 37 * i as usize]).collect();
        store
            .put("k.webp", Bytes::from(bodies[0].clone()), with_meta("0"))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for w in 0..2 {
            let writer = FsStore::new(&root).unwrap();
            let bodies = bodies.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..300 {
                    let n = (i * 2 + w) % bodies.len();
                    let body = Bytes::from(bodies[n].clone());
                    writer
                        .put("k.webp", body, with_meta(&n.to_string()))
                        .await
                        .unwrap();
                }
                0
            }));
        }
        for _ in 0..2 {
            let reader = FsStore::new(&root).unwrap();
            tasks.push(tokio::spawn(async move {
                let mut reads = 0;
                for _ in 0..300 {
                    let obj = reader.get("k.webp").await.unwrap().unwrap();
                    let n: usize = obj.head.meta.metadata["n"].parse().unwrap();
                    assert_eq!(obj.head.etag, content_etag(&obj.body));
                    assert_eq!(obj.body[0] as usize, n, "body and sidecar of one write");
                    assert_eq!(obj.head.size, obj.body.len() as u64);
                    let head = reader.head("k.webp").await.unwrap().unwrap();
                    let hn: usize = head.meta.metadata["n"].parse().unwrap();
                    assert_eq!(head.size as usize, 1000 + 37 * hn);
                    reads += 1;
                }
                reads
            }));
        }
        let mut reads = 0;
        for t in tasks {
            reads += t.await.unwrap();
        }
        assert_eq!(reads, 600);
    }

    /// Conditional puts from separate store instances: still exactly one winner.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn if_none_match_is_atomic_across_store_instances() {
        let (dir, _store) = temp_store();
        let root = dir.path().join("bucket");
        let tasks: Vec<_> = (0..16u8)
            .map(|i| {
                let s = FsStore::new(&root).unwrap();
                tokio::spawn(async move {
                    let opts = PutOptions {
                        if_none_match: true,
                        ..with_meta(&i.to_string())
                    };
                    s.put("race.webp", Bytes::from(vec![i; 100]), opts)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut winners = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            if let PutOutcome::Written { .. } = t.await.unwrap() {
                winners.push(i);
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        let obj = FsStore::new(&root)
            .unwrap()
            .get("race.webp")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&obj.body[..], &[winners[0] as u8; 100][..]);
        assert_eq!(obj.head.meta.metadata["n"], winners[0].to_string());
    }
}
