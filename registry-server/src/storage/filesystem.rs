//! The filesystem driver: one file per path under a root directory. Small
//! files are replaced by temp file + fsync + rename + directory fsync; blocking
//! calls run on tokio's blocking pool, with large buffers so a blob moves in
//! few system calls.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;

use super::{
    ByteStream, FileInfo, FileWriter, StorageDriver, StorageError, StorageResult, check_path,
};

/// Size of each read of a blob stream and of the write buffer of a writer.
const IO_CHUNK: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct FilesystemDriver {
    root: Arc<PathBuf>,
}

impl FilesystemDriver {
    pub fn new(root: impl Into<PathBuf>) -> FilesystemDriver {
        FilesystemDriver {
            root: Arc::new(root.into()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> StorageResult<PathBuf> {
        check_path(path)?;
        Ok(self.root.join(path))
    }
}

fn io_err(what: &'static str, path: &str, source: io::Error) -> StorageError {
    if source.kind() == io::ErrorKind::NotFound {
        StorageError::PathNotFound(path.to_string())
    } else {
        StorageError::Io {
            what,
            path: path.to_string(),
            source,
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StorageResult<T> + Send + 'static,
) -> StorageResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StorageError::Io {
            what: "blocking task failed for",
            path: String::new(),
            source: io::Error::other(e),
        }),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents, fsyncing each parent that gained an
/// entry, so the new directories survive a crash.
fn create_dirs_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs_durable(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn write_atomic(path: &Path, content: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dirs_durable(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl StorageDriver for FilesystemDriver {
    fn get_content<'a>(&'a self, path: &'a str) -> BoxFuture<'a, StorageResult<Bytes>> {
        Box::pin(async move {
            let full = self.full(path)?;
            let p = path.to_string();
            blocking(move || {
                fs::read(&full)
                    .map(Bytes::from)
                    .map_err(|e| io_err("cannot read", &p, e))
            })
            .await
        })
    }

    fn put_content<'a>(
        &'a self,
        path: &'a str,
        content: Bytes,
    ) -> BoxFuture<'a, StorageResult<()>> {
        Box::pin(async move {
            let full = self.full(path)?;
            let p = path.to_string();
            blocking(move || {
                write_atomic(&full, &content).map_err(|e| io_err("cannot write", &p, e))
            })
            .await
        })
    }

    fn reader<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        len: Option<u64>,
    ) -> BoxFuture<'a, StorageResult<ByteStream>> {
        Box::pin(async move {
            let full = self.full(path)?;
            let p = path.to_string();
            let (file, remaining) = blocking(move || {
                let mut f = File::open(&full).map_err(|e| io_err("cannot open", &p, e))?;
                let size = f
                    .metadata()
                    .map_err(|e| io_err("cannot stat", &p, e))?
                    .len();
                if offset > size {
                    return Err(StorageError::InvalidOffset { path: p, offset });
                }
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| io_err("cannot seek", &p, e))?;
                let rest = size - offset;
                Ok((f, len.map_or(rest, |l| l.min(rest))))
            })
            .await?;
            let stream = futures_util::stream::try_unfold(
                (Some(file), remaining),
                |(file, remaining)| async move {
                    let Some(file) = file else { return Ok(None) };
                    if remaining == 0 {
                        return Ok(None);
                    }
                    let want = remaining.min(IO_CHUNK as u64) as usize;
                    let (file, chunk) = tokio::task::spawn_blocking(move || {
                        let mut file = file;
                        let mut buf = BytesMut::zeroed(want);
                        let mut filled = 0;
                        while filled < want {
                            let n = file.read(&mut buf[filled..])?;
                            if n == 0 {
                                break;
                            }
                            filled += n;
                        }
                        buf.truncate(filled);
                        Ok::<_, io::Error>((file, buf.freeze()))
                    })
                    .await
                    .map_err(io::Error::other)??;
                    if chunk.is_empty() {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file shrank while being read",
                        ));
                    }
                    let left = remaining - chunk.len() as u64;
                    Ok(Some((chunk, (Some(file), left))))
                },
            );
            Ok(Box::pin(stream) as ByteStream)
        })
    }

    fn writer<'a>(
        &'a self,
        path: &'a str,
        append: bool,
    ) -> BoxFuture<'a, StorageResult<Box<dyn FileWriter>>> {
        Box::pin(async move {
            let full = self.full(path)?;
            let p = path.to_string();
            let writer = blocking(move || {
                let dir = full.parent().unwrap_or(Path::new("."));
                create_dirs_durable(dir).map_err(|e| io_err("cannot create", &p, e))?;
                let file = OpenOptions::new()
                    .create(true)
                    .append(append)
                    .write(true)
                    .truncate(!append)
                    .open(&full)
                    .map_err(|e| io_err("cannot open", &p, e))?;
                let size = file
                    .metadata()
                    .map_err(|e| io_err("cannot stat", &p, e))?
                    .len();
                Ok(FsWriter {
                    file: Some(file),
                    path: p,
                    buf: BytesMut::with_capacity(IO_CHUNK + (64 << 10)),
                    size,
                })
            })
            .await?;
            Ok(Box::new(writer) as Box<dyn FileWriter>)
        })
    }

    fn stat<'a>(&'a self, path: &'a str) -> BoxFuture<'a, StorageResult<FileInfo>> {
        Box::pin(async move {
            let full = self.full(path)?;
            let p = path.to_string();
            blocking(move || {
                let m = fs::metadata(&full).map_err(|e| io_err("cannot stat", &p, e))?;
                Ok(FileInfo {
                    size: m.len(),
                    modified: m.modified().map_err(|e| io_err("cannot stat", &p, e))?,
                    is_dir: m.is_dir(),
                })
            })
            .await
        })
    }

    fn list<'a>(&'a self, path: &'a str) -> BoxFuture<'a, StorageResult<Vec<String>>> {
        Box::pin(async move {
            let full = self.full(path)?;
            let p = path.to_string();
            blocking(move || {
                let mut names = Vec::new();
                for entry in fs::read_dir(&full).map_err(|e| io_err("cannot list", &p, e))? {
                    let entry = entry.map_err(|e| io_err("cannot list", &p, e))?;
                    if let Some(name) = entry.file_name().to_str()
                        && !name.starts_with('.')
                    {
                        names.push(name.to_string());
                    }
                }
                names.sort();
                Ok(names)
            })
            .await
        })
    }

    fn move_to<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, StorageResult<()>> {
        Box::pin(async move {
            let src = self.full(from)?;
            let dst = self.full(to)?;
            let p = from.to_string();
            blocking(move || {
                let dir = dst.parent().unwrap_or(Path::new("."));
                create_dirs_durable(dir).map_err(|e| io_err("cannot create", &p, e))?;
                fs::rename(&src, &dst).map_err(|e| io_err("cannot move", &p, e))?;
                sync_dir(dir).map_err(|e| io_err("cannot sync", &p, e))
            })
            .await
        })
    }

    fn delete<'a>(&'a self, path: &'a str) -> BoxFuture<'a, StorageResult<()>> {
        Box::pin(async move {
            let full = self.full(path)?;
            let p = path.to_string();
            blocking(move || {
                let m = fs::symlink_metadata(&full).map_err(|e| io_err("cannot delete", &p, e))?;
                if m.is_dir() {
                    fs::remove_dir_all(&full)
                } else {
                    fs::remove_file(&full)
                }
                .map_err(|e| io_err("cannot delete", &p, e))
            })
            .await
        })
    }
}

/// Appends in `IO_CHUNK` pieces on the blocking pool (one buffer per writer).
struct FsWriter {
    file: Option<File>,
    path: String,
    buf: BytesMut,
    size: u64,
}

impl FsWriter {
    async fn flush_buf(&mut self) -> StorageResult<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(mut file) = self.file.take() else {
            return Err(StorageError::Io {
                what: "writer already failed for",
                path: self.path.clone(),
                source: io::Error::other("earlier write failed"),
            });
        };
        let buf = std::mem::take(&mut self.buf);
        let p = self.path.clone();
        let (file, mut buf) = blocking(move || {
            file.write_all(&buf)
                .map_err(|e| io_err("cannot write", &p, e))?;
            Ok((file, buf))
        })
        .await?;
        // The same buffer is reused for the next chunk.
        buf.clear();
        self.buf = buf;
        self.file = Some(file);
        Ok(())
    }
}

impl FileWriter for FsWriter {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, StorageResult<()>> {
        Box::pin(async move {
            self.size += chunk.len() as u64;
            self.buf.extend_from_slice(&chunk);
            if self.buf.len() >= IO_CHUNK {
                self.flush_buf().await?;
            }
            Ok(())
        })
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn commit(mut self: Box<Self>) -> BoxFuture<'static, StorageResult<()>> {
        Box::pin(async move {
            self.flush_buf().await?;
            let p = self.path.clone();
            if let Some(file) = self.file.take() {
                blocking(move || file.sync_data().map_err(|e| io_err("cannot sync", &p, e)))
                    .await?;
            }
            Ok(())
        })
    }
}
