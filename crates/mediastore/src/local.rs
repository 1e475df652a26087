//! The local directory: today's layout (a key is a path under the root) and today's atomic write
//! (one vectored write to `.{name}.tmp`, length checked on disk, then rename), so a reader never
//! sees a partial file and a full disk never publishes a cut one.

use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::{MediaError, MediaStore, Object, check_key};

/// Media files under one directory.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn path(&self, key: &str) -> Result<PathBuf, MediaError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io_err(op: &'static str, key: &str) -> impl FnOnce(std::io::Error) -> MediaError {
    let key = key.to_owned();
    move |source| {
        if source.kind() == std::io::ErrorKind::NotFound && op != "write" {
            MediaError::NotFound { key }
        } else {
            MediaError::Io { op, key, source }
        }
    }
}

async fn blocking<T: Send + 'static>(
    op: &'static str,
    key: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, MediaError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MediaError::Io {
            op,
            key: key.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(io_err(op, key))
}

#[async_trait::async_trait]
impl MediaStore for LocalDir {
    async fn put(&self, key: &str, chunks: Vec<Bytes>) -> Result<(), MediaError> {
        let path = self.path(key)?;
        blocking("write", key, move || write_whole(&path, &chunks)).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Object, MediaError> {
        let path = self.path(key)?;
        blocking("read", key, move || {
            use std::os::unix::fs::FileExt as _;
            let f = std::fs::File::open(&path)?;
            let meta = f.metadata()?;
            if !meta.is_file() {
                return Err(std::io::ErrorKind::NotFound.into());
            }
            let size = meta.len();
            let r = range.unwrap_or(0..size);
            let (start, end) = (r.start.min(size), r.end.min(size));
            let mut buf =
                vec![0; usize::try_from(end - start.min(end)).map_err(std::io::Error::other)?];
            f.read_exact_at(&mut buf, start)?;
            Ok(Object {
                bytes: Bytes::from(buf),
                size,
                last_modified: meta.modified().ok(),
                etag: None,
            })
        })
        .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<usize, MediaError> {
        let paths = keys
            .iter()
            .map(|k| self.path(k).map(|p| (k.clone(), p)))
            .collect::<Result<Vec<_>, _>>()?;
        let key = keys.first().cloned().unwrap_or_default();
        blocking("delete", &key, move || {
            let mut n = 0;
            for (k, p) in paths {
                match std::fs::remove_file(&p) {
                    Ok(()) => n += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => n += 1,
                    Err(e) => {
                        tracing::warn!(key = %k, error = %e, "could not delete a media file");
                    }
                }
            }
            Ok(n)
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, MediaError> {
        // A prefix is a directory (`stream/`) and optionally the start of a name in it.
        let (dir, start) = match prefix.rsplit_once('/') {
            Some((d, s)) => (d.to_owned(), s.to_owned()),
            None => (String::new(), prefix.to_owned()),
        };
        if !dir.is_empty() {
            check_key(&dir)?;
        }
        let path = self.root.join(&dir);
        blocking("list", prefix, move || {
            let rd = match std::fs::read_dir(&path) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut out = Vec::new();
            for f in rd.flatten() {
                let Some(name) = f.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if name.starts_with(&start) && f.file_type().is_ok_and(|t| t.is_file()) {
                    out.push(if dir.is_empty() {
                        name
                    } else {
                        format!("{dir}/{name}")
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    fn local_dir(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

/// Writes `chunks` to `path` in one vectored write to a temporary file beside it
/// (`.{name}.tmp`), checks the length on disk, then renames it into place. A failed or short write
/// (a full disk) is never renamed: the temporary file is removed and the error returned.
pub fn write_whole(path: &Path, chunks: &[Bytes]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let written = write_file(&tmp, chunks).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        // Best effort: the directory scan at the next start removes it otherwise.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Writes every chunk into a new file at `path` and checks its length on disk.
fn write_file(path: &Path, chunks: &[Bytes]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    let mut slices: Vec<std::io::IoSlice<'_>> =
        chunks.iter().map(|c| std::io::IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match f.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let want: usize = chunks.iter().map(Bytes::len).sum();
    let have = f.metadata()?.len();
    if u64::try_from(want).ok() != Some(have) {
        return Err(std::io::Error::other(format!(
            "short write: {have} of {want} bytes on disk"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_range_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("s")).unwrap();
        let m = LocalDir::new(dir.path().to_owned());
        m.put(
            "s/e0-00000001.m4s",
            vec![Bytes::from_static(b"abc"), Bytes::from_static(b"def")],
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("s/e0-00000001.m4s")).unwrap(),
            b"abcdef"
        );
        let o = m.get("s/e0-00000001.m4s", Some(2..4)).await.unwrap();
        assert_eq!((&o.bytes[..], o.size), (&b"cd"[..], 6));
        let o = m.get("s/e0-00000001.m4s", Some(4..100)).await.unwrap();
        assert_eq!(&o.bytes[..], b"ef");
        assert_eq!(m.list("s/").await.unwrap(), vec!["s/e0-00000001.m4s"]);
        assert!(m.list("s/e1-").await.unwrap().is_empty());
        let gone = vec!["s/e0-00000001.m4s".to_owned(), "s/nope".to_owned()];
        assert_eq!(m.delete_many(&gone).await.unwrap(), 2);
        assert!(
            m.get("s/e0-00000001.m4s", None)
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(matches!(
            m.get("../x", None).await,
            Err(MediaError::InvalidKey(_))
        ));
    }
}
