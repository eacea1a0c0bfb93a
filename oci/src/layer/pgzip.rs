//! Deterministic parallel gzip, in the manner of pigz.
//!
//! Why hand-written: flate2's `GzEncoder` is single-threaded, and the parallel
//! gzip crates (`gzp`, `mtzip`, ...) are either not kept up, or write output
//! that depends on the number of threads or on how writes are split, or cannot
//! use flate2's zlib-rs backend. A layer digest must be a function of the tree
//! alone, so the block layout here is fixed by the byte offsets of the stream:
//!
//! * the uncompressed stream is cut into blocks of [`BLOCK_SIZE`] bytes;
//! * block `i` is raw-deflated on its own, primed with the last 32 KiB of
//!   block `i - 1` as preset dictionary (so matches still reach back across
//!   the cut, as in pigz), and ended with a sync flush, which byte-aligns it
//!   (the last block is finished instead);
//! * the deflate blocks are concatenated in order between a gzip header and
//!   trailer written here (CRC-32 with crc32fast over the uncompressed stream,
//!   length mod 2^32).
//!
//! Each block's bytes depend only on its own input, its dictionary and the
//! level, so one thread or sixteen give the same single-member gzip stream,
//! which every gzip reader (gzip, pigz, Go's compress/gzip) accepts. zlib-rs
//! has no CPU-dependent choice in its match finder, so the bytes are the same
//! on every machine too.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, FlushCompress, Status};

/// Uncompressed bytes per independently compressed block (pigz's default).
pub const BLOCK_SIZE: usize = 128 * 1024;
/// Deflate's window: the dictionary handed from one block to the next.
const DICT_SIZE: usize = 32 * 1024;

/// gzip header: magic, CM=deflate, no flags, MTIME=0, XFL=0, OS=255 (unknown),
/// as Go's compress/gzip writes it, so the blob does not depend on the time.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

struct Job {
    index: u64,
    data: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
    out: Vec<u8>,
}

struct Done {
    index: u64,
    out: io::Result<Vec<u8>>,
    data: Vec<u8>,
    dict: Vec<u8>,
}

struct Pool {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
}

/// A gzip writer that compresses blocks on a pool of threads and writes one
/// standard gzip member whose bytes do not depend on the thread count. Call
/// [`finish`](ParallelGzEncoder::finish) to write the trailer; dropping it
/// without finishing leaves a truncated stream.
pub struct ParallelGzEncoder<W: Write> {
    /// `None` only after `finish` took it.
    out: Option<W>,
    level: flate2::Compression,
    block: Vec<u8>,
    dict: Vec<u8>,
    crc: crc32fast::Hasher,
    total: u64,
    next_index: u64,
    next_write: u64,
    pending: BTreeMap<u64, Vec<u8>>,
    in_flight: usize,
    max_in_flight: usize,
    spare: Vec<Vec<u8>>,
    /// `None` for one thread: blocks are then compressed on the caller's thread.
    pool: Option<Pool>,
}

impl<W: Write> ParallelGzEncoder<W> {
    /// Writes the gzip header to `out` and starts `threads` workers (none for
    /// 1: blocks are then compressed on the calling thread). `level` 0-9.
    pub fn new(mut out: W, level: u32, threads: usize) -> io::Result<Self> {
        out.write_all(&GZIP_HEADER)?;
        let level = flate2::Compression::new(level.min(9));
        let threads = threads.max(1);
        let pool = if threads == 1 {
            None
        } else {
            Some(Pool::start(threads, level)?)
        };
        Ok(ParallelGzEncoder {
            out: Some(out),
            level,
            block: Vec::with_capacity(BLOCK_SIZE),
            dict: Vec::with_capacity(DICT_SIZE),
            crc: crc32fast::Hasher::new(),
            total: 0,
            next_index: 0,
            next_write: 0,
            pending: BTreeMap::new(),
            in_flight: 0,
            max_in_flight: threads * 4,
            spare: Vec::new(),
            pool,
        })
    }

    /// The compression level in use.
    pub fn level(&self) -> u32 {
        self.level.level()
    }

    fn out(&mut self) -> io::Result<&mut W> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))
    }

    fn spare_buf(&mut self) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b
    }

    fn recycle(&mut self, b: Vec<u8>) {
        if self.spare.len() < self.max_in_flight * 3 + 4 {
            self.spare.push(b);
        }
    }

    /// Hands the current block (possibly empty when `last`) to a worker.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let mut next = self.spare_buf();
        next.reserve(BLOCK_SIZE);
        let data = std::mem::replace(&mut self.block, next);
        let mut dict = self.spare_buf();
        dict.extend_from_slice(&self.dict);
        self.dict.clear();
        self.dict
            .extend_from_slice(&data[data.len().saturating_sub(DICT_SIZE)..]);
        let index = self.next_index;
        self.next_index += 1;
        let out = self.spare_buf();
        let job = Job {
            index,
            data,
            dict,
            last,
            out,
        };

        if self.pool.is_none() {
            let Job {
                data,
                dict,
                mut out,
                ..
            } = job;
            deflate_block(self.level, &dict, &data, last, &mut out)?;
            self.out()?.write_all(&out)?;
            self.next_write += 1;
            self.recycle(out);
            self.recycle(data);
            self.recycle(dict);
            return Ok(());
        }

        while self.in_flight >= self.max_in_flight {
            self.collect(true)?;
        }
        let sent = match self.pool.as_ref().and_then(|p| p.jobs.as_ref()) {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(io::Error::other("gzip worker threads are gone"));
        }
        self.in_flight += 1;
        // Write whatever is ready without waiting.
        while self.collect(false)? {}
        Ok(())
    }

    /// Takes one finished block from the workers (waiting for it if `block`)
    /// and writes every block that is now next in order. Returns whether a
    /// block was taken.
    fn collect(&mut self, block: bool) -> io::Result<bool> {
        let Some(pool) = self.pool.as_ref() else {
            return Ok(false);
        };
        let done = if block {
            match pool.done.recv() {
                Ok(d) => d,
                Err(_) => return Err(io::Error::other("gzip worker threads are gone")),
            }
        } else {
            match pool.done.try_recv() {
                Ok(d) => d,
                Err(_) => return Ok(false),
            }
        };
        let out = done.out?;
        self.recycle(done.data);
        self.recycle(done.dict);
        self.pending.insert(done.index, out);
        while let Some(out) = self.pending.remove(&self.next_write) {
            self.out()?.write_all(&out)?;
            self.next_write += 1;
            self.in_flight -= 1;
            self.recycle(out);
        }
        Ok(true)
    }

    /// Compresses what is left, writes the gzip trailer, stops the workers and
    /// returns the inner writer (flushed).
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while self.in_flight > 0 {
            self.collect(true)?;
        }
        let crc = self.crc.clone().finalize();
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&crc.to_le_bytes());
        trailer[4..].copy_from_slice(&(self.total as u32).to_le_bytes());
        let mut out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))?;
        out.write_all(&trailer)?;
        out.flush()?;
        if let Some(pool) = self.pool.take() {
            pool.stop();
        }
        Ok(out)
    }
}

impl<W: Write> Write for ParallelGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc.update(buf);
        self.total += buf.len() as u64;
        let mut rest = buf;
        while !rest.is_empty() {
            let take = (BLOCK_SIZE - self.block.len()).min(rest.len());
            self.block.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.block.len() == BLOCK_SIZE {
                self.submit(false)?;
            }
        }
        Ok(buf.len())
    }

    /// Flushes the inner writer only: cutting a block early would make the
    /// output depend on when flush is called.
    fn flush(&mut self) -> io::Result<()> {
        self.out()?.flush()
    }
}

impl<W: Write> Drop for ParallelGzEncoder<W> {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.stop();
        }
    }
}

impl Pool {
    fn start(threads: usize, level: flate2::Compression) -> io::Result<Pool> {
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(threads * 2);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let (done_tx, done_rx) = channel::<Done>();
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = Arc::clone(&jobs_rx);
            let tx = done_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("berth-gzip-{i}"))
                .spawn(move || worker(rx, tx, level))?;
            workers.push(handle);
        }
        Ok(Pool {
            jobs: Some(jobs_tx),
            done: done_rx,
            workers,
        })
    }

    fn stop(mut self) {
        // Closing the job channel ends every worker's loop.
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(jobs: Arc<Mutex<Receiver<Job>>>, done: Sender<Done>, level: flate2::Compression) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let Job {
            index,
            data,
            dict,
            last,
            mut out,
        } = job;
        let result = catch_unwind(AssertUnwindSafe(|| {
            deflate_block(level, &dict, &data, last, &mut out)
        }));
        let out = match result {
            Ok(Ok(())) => Ok(out),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::other("gzip worker panicked")),
        };
        if done
            .send(Done {
                index,
                out,
                data,
                dict,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Raw-deflates `data` primed with `dict` into `out`: sync-flushed (byte
/// aligned, not final) unless `last`, which finishes the deflate stream.
///
/// Always with a fresh compressor: when deflate looks for matches near the
/// end of its input it may compare window bytes past the data, and after a
/// `reset` those are left over from the compressor's previous block, so a
/// reused compressor makes the output depend on which worker got which
/// block. A new one starts from a zeroed window (the allocation costs about
/// 1% of compressing a block).
fn deflate_block(
    level: flate2::Compression,
    dict: &[u8],
    data: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut compress = Compress::new(level, false);
    let c = &mut compress;
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    out.clear();
    // Room for the whole block at once (more than deflate's worst case), so
    // the stream never depends on how much output space a call had: with
    // too little, zlib may repeat flush markers.
    out.reserve(data.len() + data.len() / 16 + 1024);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let start = c.total_in();
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(16 * 1024));
        }
        let consumed = (c.total_in() - start) as usize;
        let status = c
            .compress_vec(&data[consumed..], out, flush)
            .map_err(io::Error::other)?;
        let consumed = (c.total_in() - start) as usize;
        let done = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            // A sync flush is complete once deflate returns with room to spare.
            _ => consumed == data.len() && out.len() < out.capacity(),
        };
        if done {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(n: usize) -> Vec<u8> {
        // Compressible but not trivial: text-like with a slowly changing pattern.
        let mut v = Vec::with_capacity(n);
        let mut x: u32 = 12345;
        while v.len() < n {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let word = ["layer", "tar", "gzip", "berth", "oci", "\n", " ", "digest"];
            v.extend_from_slice(word[(x >> 16) as usize % word.len()].as_bytes());
            if x % 7 == 3 {
                v.extend_from_slice(&x.to_le_bytes());
            }
        }
        v.truncate(n);
        v
    }

    fn gz(data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
        let mut e = ParallelGzEncoder::new(Vec::new(), 6, threads).unwrap();
        for c in data.chunks(chunk.max(1)) {
            e.write_all(c).unwrap();
        }
        e.finish().unwrap()
    }

    fn gunzip(blob: &[u8]) -> Vec<u8> {
        let mut d = flate2::read::GzDecoder::new(blob);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn roundtrips_all_sizes() {
        for n in [
            0,
            1,
            DICT_SIZE - 1,
            BLOCK_SIZE - 1,
            BLOCK_SIZE,
            BLOCK_SIZE + 1,
            3 * BLOCK_SIZE,
            1_000_003,
        ] {
            let data = sample(n);
            let blob = gz(&data, 3, 4096);
            assert_eq!(gunzip(&blob), data, "size {n}");
        }
    }

    #[test]
    fn same_bytes_for_any_thread_count_and_write_pattern() {
        let data = sample(2_500_000);
        let one = gz(&data, 1, 1 << 20);
        for (threads, chunk) in [(2, 512), (4, 100_000), (8, 7), (3, BLOCK_SIZE)] {
            assert!(
                gz(&data, threads, chunk) == one,
                "threads {threads} chunk {chunk}"
            );
        }
        // And it actually compresses, with the dictionary carried across blocks.
        assert!(one.len() < data.len() / 2);
    }

    #[test]
    fn level_zero_and_nine() {
        let data = sample(400_000);
        for level in [0, 1, 9] {
            let mut e = ParallelGzEncoder::new(Vec::new(), level, 2).unwrap();
            e.write_all(&data).unwrap();
            let blob = e.finish().unwrap();
            assert_eq!(gunzip(&blob), data);
        }
    }

    #[test]
    fn dropping_without_finish_stops_workers() {
        let mut e = ParallelGzEncoder::new(Vec::new(), 6, 4).unwrap();
        e.write_all(&sample(1_000_000)).unwrap();
        drop(e);
    }
}
