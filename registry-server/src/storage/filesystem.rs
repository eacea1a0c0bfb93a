//! The filesystem driver: one file per path under a root directory. Small
//! files are replaced by temp file + fsync + rename + directory fsync; blocking
//! calls run on tokio's blocking pool, with large buffers so a blob moves in
//! few system calls.
//!
//! Blobs are pipelined so that the network, the disk and the caller never
//! wait on each other more than one chunk: a writer keeps one write in flight
//! while the next chunk fills, and asks the kernel to start writing back
//! every few MiB, so the fsync at commit finds little left to do; a reader
//! keeps one read ahead of the chunk being sent.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;

use super::{
    ByteStream, FileInfo, FileWriter, StorageDriver, StorageError, StorageResult, check_path,
};

/// Size of each read of a blob stream and of each write of a writer.
const IO_CHUNK: usize = 1 << 20;

/// A writer asks the kernel to start writing back after this many bytes, so
/// that the disk works while the rest arrives instead of all at the fsync.
const WRITEBACK_STEP: u64 = 8 << 20;

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

impl FilesystemDriver {
    /// `len` bytes (or the rest) of the file at `path` from `offset`, as
    /// chunks fetched the `fetch` way.
    async fn stream(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
        fetch: Fetch,
    ) -> StorageResult<ByteStream> {
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
            if let Fetch::Read = fetch {
                // Reads go on from the file position.
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| io_err("cannot seek", &p, e))?;
                advise_sequential(&f);
            }
            let rest = size - offset;
            Ok((f, len.map_or(rest, |l| l.min(rest))))
        })
        .await?;
        Ok(chunk_stream(Cursor {
            file,
            at: offset,
            remaining,
            fetch,
        }))
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

/// Awaits a blocking task that returns a storage result.
async fn join<T>(task: JoinHandle<StorageResult<T>>) -> StorageResult<T> {
    match task.await {
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

/// `get_content` reads files up to this size without the blocking pool.
const INLINE_READ_MAX: u64 = 64 << 10;

/// Reads all of `file`, expected to be `size` bytes (it may have changed).
fn read_whole(file: &mut File, size: u64) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0).saturating_add(1));
    file.read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}

/// How a chunk of a file becomes bytes to send.
#[derive(Clone, Copy)]
enum Fetch {
    /// Read into a buffer, `IO_CHUNK` at a time.
    Read,
    /// Memory-mapped, `MAPPED_CHUNK` at a time: a blob GET then costs one
    /// copy (into the socket) instead of two. Only for files never changed
    /// in place (see `committed_reader`).
    Map,
}

/// How much of a mapped blob one body chunk holds. Each chunk is its own
/// mapping, unmapped once sent, so a GET holds a few of them at most.
const MAPPED_CHUNK: u64 = 4 << 20;

/// A file being streamed: where the next chunk starts and what remains.
struct Cursor {
    file: File,
    at: u64,
    remaining: u64,
    fetch: Fetch,
}

/// Fetches the next chunk on the blocking pool (disk waits happen there,
/// never on the async threads); gives back the cursor past it and the chunk.
fn spawn_fetch(cursor: Cursor) -> JoinHandle<io::Result<(Cursor, Bytes)>> {
    let Cursor {
        file,
        at,
        remaining,
        fetch,
    } = cursor;
    let want = remaining.min(match fetch {
        Fetch::Read => IO_CHUNK as u64,
        Fetch::Map => MAPPED_CHUNK,
    });
    // Allocated here, on the async thread that will also free it once sent.
    let mut buf = match fetch {
        Fetch::Read => Vec::with_capacity(want as usize),
        Fetch::Map => Vec::new(),
    };
    tokio::task::spawn_blocking(move || {
        let chunk = match fetch {
            Fetch::Read => {
                // At the file position, which is `at`: chunks come in order.
                // `read_to_end` fills the spare capacity without zeroing it.
                (&file).take(want).read_to_end(&mut buf)?;
                if (buf.len() as u64) < want {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being read",
                    ));
                }
                Bytes::from(buf)
            }
            Fetch::Map => map_range(&file, at, want)?,
        };
        let next = Cursor {
            file,
            at: at + want,
            remaining: remaining - want,
            fetch,
        };
        Ok((next, chunk))
    })
}

/// Streams what `cursor` covers, one chunk fetched ahead of the one being
/// sent.
fn chunk_stream(cursor: Cursor) -> ByteStream {
    let first = (cursor.remaining > 0).then(|| spawn_fetch(cursor));
    let stream = futures_util::stream::try_unfold(first, |next| async move {
        let Some(task) = next else { return Ok(None) };
        let (cursor, chunk) = task.await.map_err(io::Error::other)??;
        let next = (cursor.remaining > 0).then(|| spawn_fetch(cursor));
        Ok(Some((chunk, next)))
    });
    Box::pin(stream)
}

/// `len` (> 0) bytes of `file` from `offset`, memory-mapped, with the
/// pages read in now (on the calling blocking thread) rather than faulted
/// in later by the socket write on an async thread.
fn map_range(file: &File, offset: u64, len: u64) -> io::Result<Bytes> {
    let len = usize::try_from(len).map_err(io::Error::other)?;
    // SAFETY: the mapping is only undefined if the file is changed or cut
    // short while mapped. `committed_reader` is only for files that are
    // written elsewhere, moved into place whole and removed by unlinking,
    // which leaves an open mapping intact.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map(file)?
    };
    #[cfg(target_os = "linux")]
    if map.advise(memmap2::Advice::PopulateRead).is_err() {
        // Kernels before 5.14: ask for read-ahead instead.
        let _ = map.advise(memmap2::Advice::WillNeed);
    }
    Ok(Bytes::from_owner(map))
}

/// Tells the kernel the file is read front to back (a larger read-ahead).
fn advise_sequential(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; the call only sets a hint.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Starts writeback of `len` bytes at `offset` without waiting for it. Only
/// a hint: durability comes from the fsync at commit.
fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; the kernel only queues writeback.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

impl StorageDriver for FilesystemDriver {
    fn get_content<'a>(&'a self, path: &'a str) -> BoxFuture<'a, StorageResult<Bytes>> {
        Box::pin(async move {
            let full = self.full(path)?;
            // Small files (links, tags, manifests) are read right here: a
            // manifest GET reads three of them, and a hand-off to the
            // blocking pool and back costs more than the read of a file in
            // the page cache (measured: a third of the request rate).
            let mut file = File::open(&full).map_err(|e| io_err("cannot open", path, e))?;
            let size = file
                .metadata()
                .map_err(|e| io_err("cannot stat", path, e))?
                .len();
            if size <= INLINE_READ_MAX {
                return read_whole(&mut file, size).map_err(|e| io_err("cannot read", path, e));
            }
            let p = path.to_string();
            blocking(move || read_whole(&mut file, size).map_err(|e| io_err("cannot read", &p, e)))
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
        Box::pin(self.stream(path, offset, len, Fetch::Read))
    }

    fn committed_reader<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        len: Option<u64>,
    ) -> BoxFuture<'a, StorageResult<ByteStream>> {
        Box::pin(self.stream(path, offset, len, Fetch::Map))
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
                    open: Some(OpenFile {
                        file,
                        end: size,
                        written_back: size,
                    }),
                    in_flight: None,
                    path: p,
                    buf: BytesMut::with_capacity(IO_CHUNK),
                    spare: None,
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

/// The file of a writer with where it ends and how much of it the kernel
/// was already asked to write back.
struct OpenFile {
    file: File,
    end: u64,
    written_back: u64,
}

impl OpenFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.end += data.len() as u64;
        if self.end - self.written_back >= WRITEBACK_STEP {
            start_writeback(&self.file, self.written_back, self.end - self.written_back);
            self.written_back = self.end;
        }
        Ok(())
    }
}

type WriteTask = JoinHandle<StorageResult<(OpenFile, BytesMut)>>;

/// Appends in `IO_CHUNK` pieces on the blocking pool with one write in
/// flight while the next buffer fills (two buffers per writer).
struct FsWriter {
    /// The file, when no write is in flight.
    open: Option<OpenFile>,
    in_flight: Option<WriteTask>,
    path: String,
    buf: BytesMut,
    /// The buffer of the last finished write, for the next one.
    spare: Option<BytesMut>,
    size: u64,
}

impl FsWriter {
    /// Waits for the write in flight; gets the file and its buffer back.
    async fn settle(&mut self) -> StorageResult<()> {
        if let Some(task) = self.in_flight.take() {
            let (open, mut buf) = join(task).await?;
            buf.clear();
            self.open = Some(open);
            self.spare = Some(buf);
        }
        Ok(())
    }

    fn take_file(&mut self) -> StorageResult<OpenFile> {
        self.open.take().ok_or_else(|| StorageError::Io {
            what: "writer already failed for",
            path: self.path.clone(),
            source: io::Error::other("earlier write failed"),
        })
    }

    /// Starts writing the full buffer and carries on with the spare one.
    async fn submit(&mut self) -> StorageResult<()> {
        self.settle().await?;
        let mut open = self.take_file()?;
        let spare = self
            .spare
            .take()
            .unwrap_or_else(|| BytesMut::with_capacity(IO_CHUNK));
        let full = std::mem::replace(&mut self.buf, spare);
        let p = self.path.clone();
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            open.append(&full)
                .map_err(|e| io_err("cannot write", &p, e))?;
            Ok((open, full))
        }));
        Ok(())
    }
}

impl FileWriter for FsWriter {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, StorageResult<()>> {
        Box::pin(async move {
            self.size += chunk.len() as u64;
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let n = rest.len().min(IO_CHUNK - self.buf.len());
                self.buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if self.buf.len() >= IO_CHUNK {
                    self.submit().await?;
                }
            }
            Ok(())
        })
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn commit(mut self: Box<Self>) -> BoxFuture<'static, StorageResult<()>> {
        Box::pin(async move {
            self.settle().await?;
            let mut open = self.take_file()?;
            let last = std::mem::take(&mut self.buf);
            let p = self.path.clone();
            blocking(move || {
                open.append(&last)
                    .map_err(|e| io_err("cannot write", &p, e))?;
                open.file
                    .sync_data()
                    .map_err(|e| io_err("cannot sync", &p, e))
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4099) as u8).collect()
    }

    /// What `reader` streams, checked against `committed_reader` (mapped).
    async fn read_all(
        driver: &FilesystemDriver,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Vec<u8> {
        let mut both = Vec::new();
        for mapped in [false, true] {
            let mut stream = if mapped {
                driver.committed_reader(path, offset, len).await.unwrap()
            } else {
                driver.reader(path, offset, len).await.unwrap()
            };
            let mut out = Vec::new();
            while let Some(chunk) = stream.next().await {
                out.extend_from_slice(&chunk.unwrap());
            }
            both.push(out);
        }
        assert!(both[0] == both[1], "mapped and read bytes differ");
        both.remove(0)
    }

    /// Chunks of odd sizes across several write buffers, an append by a
    /// second writer, and reads at offsets across read chunks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_writes_and_reads_keep_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let driver = FilesystemDriver::new(dir.path());
        let data = pattern(3 * IO_CHUNK + 12_345);
        let (first, second) = data.split_at(2 * IO_CHUNK + 1);
        let mut w = driver.writer("a/data", false).await.unwrap();
        for piece in first.chunks(300_007) {
            w.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        assert_eq!(w.size(), first.len() as u64);
        w.commit().await.unwrap();
        let mut w = driver.writer("a/data", true).await.unwrap();
        for piece in second.chunks(IO_CHUNK + 3) {
            w.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        assert_eq!(w.size(), data.len() as u64);
        w.commit().await.unwrap();

        assert!(read_all(&driver, "a/data", 0, None).await == data);
        let at = IO_CHUNK as u64 - 5;
        let part = read_all(&driver, "a/data", at, Some(IO_CHUNK as u64 + 10)).await;
        assert!(part == data[at as usize..at as usize + IO_CHUNK + 10]);
        assert!(
            read_all(&driver, "a/data", data.len() as u64, None)
                .await
                .is_empty()
        );
        assert!(matches!(
            driver.reader("a/data", data.len() as u64 + 1, None).await,
            Err(StorageError::InvalidOffset { .. })
        ));
        assert!(matches!(
            driver
                .committed_reader("a/data", data.len() as u64 + 1, None)
                .await,
            Err(StorageError::InvalidOffset { .. })
        ));
        assert!(matches!(
            driver.committed_reader("a/missing", 0, None).await,
            Err(StorageError::PathNotFound(_))
        ));
    }
}
