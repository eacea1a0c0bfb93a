//! A streaming tar reader for untrusted layers: ustar, PAX (local records,
//! global headers skipped), GNU long names and base-256 numbers, v7. It never
//! allocates from a size field except for extended headers, which are capped
//! at 1 MiB (Go's limit); header-only entry types carry no data whatever their
//! size field says (as Go reads them). Every failure is a `LayerError` that
//! names the entry or the offset.

use super::tar_write::{BLOCK, MAX_PAX_SIZE, padding};
use super::{LayerError, display_name};

/// A source of bytes that hands out what it has buffered, like `BufRead`
/// but with the layer's own error type (decompression errors stay typed).
pub(crate) trait ByteSource {
    /// Buffered bytes; empty only at the end of the stream.
    fn chunk(&mut self) -> Result<&[u8], LayerError>;
    /// Marks `n` bytes of the last chunk as used.
    fn consume(&mut self, n: usize);
}

/// A `ByteSource` over any reader, for tests.
#[cfg(test)]
pub(crate) struct ReadSource<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
}

#[cfg(test)]
impl<R: std::io::Read> ReadSource<R> {
    pub fn new(inner: R) -> Self {
        ReadSource {
            inner,
            buf: vec![0u8; 64 * 1024],
            pos: 0,
            len: 0,
        }
    }
}

#[cfg(test)]
impl<R: std::io::Read> ByteSource for ReadSource<R> {
    fn chunk(&mut self) -> Result<&[u8], LayerError> {
        if self.pos == self.len {
            self.pos = 0;
            self.len = loop {
                match self.inner.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(LayerError::Decompress {
                            compression: super::Compression::None,
                            source: e,
                        });
                    }
                }
            };
        }
        Ok(&self.buf[self.pos..self.len])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.len);
    }
}

/// Entry types as the layer code sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryType {
    Regular,
    Hardlink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

/// One entry, with PAX and GNU overrides applied.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub path: Vec<u8>,
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Bytes of data that follow (0 for header-only types).
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub link: Vec<u8>,
    pub dev_major: u64,
    pub dev_minor: u64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    pub fn display(&self) -> String {
        display_name(&self.path)
    }
}

/// Values PAX records override.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse: bool,
}

pub(crate) struct TarReader<S> {
    src: S,
    /// Bytes of the stream consumed so far.
    offset: u64,
    /// Data (and padding) of the current entry not yet consumed.
    data_left: u64,
    pad_left: u64,
    /// Name of the current entry, for truncation errors.
    current: Option<String>,
    ended: bool,
}

impl<S: ByteSource> TarReader<S> {
    pub fn new(src: S) -> Self {
        TarReader {
            src,
            offset: 0,
            data_left: 0,
            pad_left: 0,
            current: None,
            ended: false,
        }
    }

    pub fn into_source(self) -> S {
        self.src
    }

    /// Consumes the rest of the stream (after the end-of-archive marker).
    pub fn drain(&mut self) -> Result<(), LayerError> {
        loop {
            let n = self.src.chunk()?.len();
            if n == 0 {
                return Ok(());
            }
            self.src.consume(n);
            self.offset += n as u64;
        }
    }

    fn truncated(&self) -> LayerError {
        LayerError::Truncated {
            offset: self.offset,
            entry: self.current.clone(),
        }
    }

    /// Reads exactly `out.len()` bytes; `Ok(false)` if the stream ended before
    /// the first byte, `Truncated` if it ended after.
    fn read_exact_or_end(&mut self, out: &mut [u8]) -> Result<bool, LayerError> {
        let mut filled = 0;
        while filled < out.len() {
            let chunk = self.src.chunk()?;
            if chunk.is_empty() {
                if filled == 0 {
                    return Ok(false);
                }
                return Err(self.truncated());
            }
            let n = chunk.len().min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&chunk[..n]);
            self.src.consume(n);
            self.offset += n as u64;
            filled += n;
        }
        Ok(true)
    }

    fn skip(&mut self, mut n: u64) -> Result<(), LayerError> {
        while n > 0 {
            let chunk = self.src.chunk()?;
            if chunk.is_empty() {
                return Err(self.truncated());
            }
            let k = (chunk.len() as u64).min(n) as usize;
            self.src.consume(k);
            self.offset += k as u64;
            n -= k as u64;
        }
        Ok(())
    }

    /// Hands the current entry's data to `f` in the pieces the source has,
    /// up to `max` bytes. Returns the number of bytes handed over (0 when the
    /// data is exhausted).
    pub fn read_data(
        &mut self,
        max: usize,
        f: &mut dyn FnMut(&[u8]) -> Result<(), LayerError>,
    ) -> Result<usize, LayerError> {
        if self.data_left == 0 {
            return Ok(0);
        }
        let chunk = self.src.chunk()?;
        if chunk.is_empty() {
            return Err(self.truncated());
        }
        let n = (chunk.len() as u64).min(self.data_left).min(max as u64) as usize;
        f(&chunk[..n])?;
        self.src.consume(n);
        self.offset += n as u64;
        self.data_left -= n as u64;
        Ok(n)
    }

    /// Skips the rest of the current entry's data and its padding.
    fn finish_entry(&mut self) -> Result<(), LayerError> {
        let n = self.data_left + self.pad_left;
        self.data_left = 0;
        self.pad_left = 0;
        self.skip(n)
    }

    /// Reads an extended header's data (bounded by the caller).
    fn read_special(&mut self, size: u64) -> Result<Vec<u8>, LayerError> {
        let mut data = vec![0u8; size as usize];
        if !self.read_exact_or_end(&mut data)? && size > 0 {
            return Err(self.truncated());
        }
        self.skip(padding(size) as u64)?;
        Ok(data)
    }

    /// The next entry, or `None` at the end-of-archive marker (or at a clean
    /// end of stream between entries, as Go's reader accepts).
    pub fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
        if self.ended {
            return Ok(None);
        }
        self.finish_entry()?;
        self.current = None;
        let mut pax = Pax::default();
        let mut have_ext = false;
        let mut gnu_name: Option<Vec<u8>> = None;
        let mut gnu_link: Option<Vec<u8>> = None;
        let mut blk = [0u8; BLOCK];
        loop {
            let at = self.offset;
            if !self.read_exact_or_end(&mut blk)? {
                if have_ext {
                    return Err(self.truncated());
                }
                self.ended = true;
                return Ok(None);
            }
            if blk.iter().all(|&b| b == 0) {
                // End of archive: a second zero block, or the end of the stream.
                let mut second = [0u8; BLOCK];
                let more = self.read_exact_or_end(&mut second)?;
                if more && second.iter().any(|&b| b != 0) {
                    return Err(LayerError::Malformed {
                        offset: at + BLOCK as u64,
                        reason: "data after a single zero block (corrupt end-of-archive marker)"
                            .into(),
                    });
                }
                self.ended = true;
                return Ok(None);
            }
            let h = RawHeader::parse(&blk, at)?;
            let name_for_errors = pax
                .path
                .as_deref()
                .or(gnu_name.as_deref())
                .unwrap_or(&h.name);
            let ename = display_name(name_for_errors);
            let malformed = |reason: String| LayerError::MalformedEntry {
                entry: ename.clone(),
                reason,
            };

            match h.flag {
                b'x' | b'g' | b'L' | b'K' => {
                    if h.size > MAX_PAX_SIZE as u64 {
                        return Err(malformed(format!(
                            "extended header of {} bytes exceeds the limit of {} bytes",
                            h.size, MAX_PAX_SIZE
                        )));
                    }
                    self.current = Some(ename.clone());
                    let data = self.read_special(h.size)?;
                    have_ext = true;
                    match h.flag {
                        b'x' => parse_pax(&data, &mut pax).map_err(malformed)?,
                        b'g' => {
                            // Global headers: validated, then ignored (as
                            // containerd does).
                            parse_pax(&data, &mut Pax::default()).map_err(malformed)?;
                        }
                        b'L' => gnu_name = Some(cut_nul(&data).to_vec()),
                        _ => gnu_link = Some(cut_nul(&data).to_vec()),
                    }
                    continue;
                }
                _ => {}
            }

            let path = pax.path.take().or(gnu_name.take()).unwrap_or(h.name);
            let entry_name = display_name(&path);
            let kind = match h.flag {
                b'0' | b'\0' | b'7' => {
                    // Old archives mark directories with a trailing slash only.
                    if h.flag == b'\0' && path.ends_with(b"/") {
                        EntryType::Dir
                    } else {
                        EntryType::Regular
                    }
                }
                b'1' => EntryType::Hardlink,
                b'2' => EntryType::Symlink,
                b'3' => EntryType::Char,
                b'4' => EntryType::Block,
                b'5' => EntryType::Dir,
                b'6' => EntryType::Fifo,
                b'S' => {
                    return Err(LayerError::UnsupportedEntry {
                        entry: entry_name,
                        kind: "GNU sparse file".into(),
                    });
                }
                other => {
                    return Err(LayerError::UnsupportedEntry {
                        entry: entry_name,
                        kind: describe_flag(other),
                    });
                }
            };
            if pax.sparse {
                return Err(LayerError::UnsupportedEntry {
                    entry: entry_name,
                    kind: "PAX sparse file".into(),
                });
            }
            let size = pax.size.unwrap_or(h.size);
            let (mtime, mtime_nsec) = pax.mtime.unwrap_or((h.mtime, 0));
            let entry = Entry {
                path,
                kind,
                mode: h.mode,
                uid: pax.uid.unwrap_or(h.uid),
                gid: pax.gid.unwrap_or(h.gid),
                size: if header_only(kind) { 0 } else { size },
                mtime,
                mtime_nsec,
                link: pax.link.take().or(gnu_link.take()).unwrap_or(h.link),
                dev_major: h.dev_major,
                dev_minor: h.dev_minor,
                xattrs: std::mem::take(&mut pax.xattrs),
            };
            self.data_left = entry.size;
            self.pad_left = padding(entry.size) as u64;
            self.current = Some(entry_name);
            return Ok(Some(entry));
        }
    }
}

/// Types whose size field is not followed by data (Go's `isHeaderOnlyType`).
fn header_only(kind: EntryType) -> bool {
    !matches!(kind, EntryType::Regular)
}

fn describe_flag(flag: u8) -> String {
    match flag {
        b'V' => "GNU volume label".into(),
        b'M' => "GNU multi-volume continuation".into(),
        b'D' => "GNU dump directory".into(),
        b'N' => "GNU old long name".into(),
        f if f.is_ascii_graphic() => format!("'{}'", f as char),
        f => format!("0x{f:02x}"),
    }
}

fn cut_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// The fields of one 512-byte header block.
struct RawHeader {
    name: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    flag: u8,
    link: Vec<u8>,
    dev_major: u64,
    dev_minor: u64,
}

impl RawHeader {
    fn parse(b: &[u8; BLOCK], offset: u64) -> Result<RawHeader, LayerError> {
        let bad = |reason: String| LayerError::Malformed { offset, reason };
        let stored = parse_octal(&b[148..156]).map_err(|_| {
            bad(if offset == 0 {
                "not a tar archive (no valid header at the start)".into()
            } else {
                "invalid header checksum field".into()
            })
        })?;
        let (unsigned, signed) = checksums(b);
        if stored != unsigned as i64 && stored != signed {
            return Err(bad(if offset == 0 {
                "not a tar archive (header checksum mismatch)".into()
            } else {
                "header checksum mismatch".into()
            }));
        }

        let mut name = cut_nul(&b[0..100]).to_vec();
        let magic = &b[257..263];
        let version = &b[263..265];
        let ustar = magic == b"ustar\0" && version == b"00";
        let star = ustar && &b[508..512] == b"tar\0";
        if ustar {
            let prefix = if star {
                cut_nul(&b[345..476])
            } else {
                cut_nul(&b[345..500])
            };
            if !prefix.is_empty() {
                let mut full = prefix.to_vec();
                full.push(b'/');
                full.extend_from_slice(&name);
                name = full;
            }
        }

        let ename = display_name(&name);
        let field = |what: &str, f: &[u8]| {
            parse_numeric(f).map_err(|()| LayerError::MalformedEntry {
                entry: ename.clone(),
                reason: format!("invalid {what} field in tar header"),
            })
        };
        let nonneg = |what: &str, v: i64| {
            u64::try_from(v).map_err(|_| LayerError::MalformedEntry {
                entry: ename.clone(),
                reason: format!("negative {what} in tar header"),
            })
        };
        let mode = field("mode", &b[100..108])?;
        let uid = nonneg("uid", field("uid", &b[108..116])?)?;
        let gid = nonneg("gid", field("gid", &b[116..124])?)?;
        let size = nonneg("size", field("size", &b[124..136])?)?;
        let mtime = field("mtime", &b[136..148])?;
        let flag = b[156];
        let link = cut_nul(&b[157..257]).to_vec();
        let (dev_major, dev_minor) = if ustar || magic == b"ustar " {
            (
                nonneg("device major", field("device major", &b[329..337])?)?,
                nonneg("device minor", field("device minor", &b[337..345])?)?,
            )
        } else {
            (0, 0)
        };
        Ok(RawHeader {
            name,
            mode: (mode & 0o7777) as u32,
            uid,
            gid,
            size,
            mtime,
            flag,
            link,
            dev_major,
            dev_minor,
        })
    }
}

/// Unsigned and signed (historic) sums of the block with the checksum field
/// counted as spaces.
fn checksums(b: &[u8; BLOCK]) -> (u32, i64) {
    let mut u: u32 = 0;
    let mut s: i64 = 0;
    for (i, &c) in b.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        u += u32::from(c);
        s += i64::from(c as i8);
    }
    (u, s)
}

/// Octal (spaces and NULs around it allowed) or GNU base-256 (two's
/// complement big-endian after a marker bit), as Go's `parseNumeric`.
fn parse_numeric(f: &[u8]) -> Result<i64, ()> {
    match f.first() {
        Some(&first) if first & 0x80 != 0 => {
            let inv: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
            let mut x: u64 = 0;
            for (i, &c) in f.iter().enumerate() {
                let mut c = c ^ inv;
                if i == 0 {
                    c &= 0x7f;
                }
                if x >> 56 > 0 {
                    return Err(());
                }
                x = (x << 8) | u64::from(c);
            }
            if x >> 63 > 0 {
                return Err(());
            }
            let x = x as i64;
            Ok(if inv == 0xff { !x } else { x })
        }
        _ => parse_octal(f),
    }
}

fn parse_octal(f: &[u8]) -> Result<i64, ()> {
    let start = f
        .iter()
        .position(|&c| c != b' ' && c != 0)
        .unwrap_or(f.len());
    let rest = &f[start..];
    let end = rest
        .iter()
        .position(|&c| c == b' ' || c == 0)
        .unwrap_or(rest.len());
    let digits = &rest[..end];
    // After the digits only spaces and NULs may follow.
    if rest[end..].iter().any(|&c| c != b' ' && c != 0) {
        return Err(());
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return Err(());
        }
        v = v.checked_mul(8).ok_or(())?;
        v += i64::from(d - b'0');
    }
    Ok(v)
}

/// Parses `"%d %s=%s\n"` records into `pax`.
fn parse_pax(mut data: &[u8], pax: &mut Pax) -> Result<(), String> {
    // GNU tar pads some PAX headers with NULs.
    while !data.is_empty() && data.iter().any(|&b| b != 0) {
        let sp = data
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or("invalid PAX record: no length")?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or("invalid PAX record length")?;
        if len <= sp + 1 || len > data.len() {
            return Err(format!(
                "PAX record length {len} does not fit the {} bytes left",
                data.len()
            ));
        }
        let record = &data[sp + 1..len];
        data = &data[len..];
        let Some(record) = record.strip_suffix(b"\n") else {
            return Err("PAX record does not end in a newline".into());
        };
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("PAX record without '='")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        apply_pax_record(key, value, pax)?;
    }
    Ok(())
}

fn apply_pax_record(key: &[u8], value: &[u8], pax: &mut Pax) -> Result<(), String> {
    let num = |what: &str| -> Result<u64, String> {
        std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| format!("invalid PAX {what} {:?}", String::from_utf8_lossy(value)))
    };
    match key {
        b"path" => {
            if value.contains(&0) {
                return Err("PAX path contains a NUL byte".into());
            }
            pax.path = Some(value.to_vec());
        }
        b"linkpath" => {
            if value.contains(&0) {
                return Err("PAX linkpath contains a NUL byte".into());
            }
            pax.link = Some(value.to_vec());
        }
        b"size" => {
            let v = num("size")?;
            if v > i64::MAX as u64 {
                return Err("PAX size out of range".into());
            }
            pax.size = Some(v);
        }
        b"uid" => pax.uid = Some(num("uid")?),
        b"gid" => pax.gid = Some(num("gid")?),
        b"mtime" => pax.mtime = Some(parse_pax_time(value)?),
        _ => {
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                if name.is_empty() || name.contains(&0) {
                    return Err("invalid xattr name in PAX record".into());
                }
                if let Some(slot) = pax.xattrs.iter_mut().find(|(n, _)| n == name) {
                    slot.1 = value.to_vec();
                } else {
                    pax.xattrs.push((name.to_vec(), value.to_vec()));
                }
            } else if key.starts_with(b"GNU.sparse.") {
                pax.sparse = true;
            }
            // Everything else (atime, ctime, uname, gname, charset, comment,
            // vendor records) does not affect a layer.
        }
    }
    Ok(())
}

/// `[-]seconds[.fraction]`.
fn parse_pax_time(v: &[u8]) -> Result<(i64, u32), String> {
    let err = || format!("invalid PAX mtime {:?}", String::from_utf8_lossy(v));
    let s = std::str::from_utf8(v).map_err(|_| err())?;
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let negative = secs.starts_with('-');
    let digits = secs.strip_prefix('-').unwrap_or(secs);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let mut secs: i64 = digits.parse().map_err(|_| err())?;
    let mut nsec: u32 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        nsec += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
    }
    if negative {
        secs = -secs;
        if nsec > 0 {
            // -1.25 is 1.25 s before the epoch: -2 s + 0.75 s.
            secs -= 1;
            nsec = 1_000_000_000 - nsec;
        }
    }
    Ok((secs, nsec))
}

#[cfg(test)]
mod tests {
    use super::super::tar_write::{Header, Kind, encode_header};
    use super::*;

    fn reader(bytes: &[u8]) -> TarReader<ReadSource<&[u8]>> {
        TarReader::new(ReadSource::new(bytes))
    }

    fn entry_bytes(name: &[u8], kind: Kind, data: &[u8], link: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let x = vec![(b"user.a".to_vec(), b"1".to_vec())];
        encode_header(
            &Header {
                name,
                kind,
                mode: 0o4755,
                uid: 1000,
                gid: 5_000_000,
                size: data.len() as u64,
                mtime: 1_600_000_000,
                link,
                dev_major: 0,
                dev_minor: 0,
                xattrs: &x,
            },
            &mut out,
        )
        .unwrap();
        out.extend_from_slice(data);
        super::super::tar_write::pad(&mut out, data.len() as u64);
        out
    }

    #[test]
    fn reads_what_the_writer_writes() {
        let long = vec![b'd'; 300];
        let mut tar = entry_bytes(&long, Kind::Regular, b"hello", b"");
        tar.extend(entry_bytes(b"l", Kind::Symlink, b"", &[b't'; 200]));
        tar.extend_from_slice(&[0u8; 1024]);
        let mut r = reader(&tar);
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.path, long);
        assert_eq!(e.mode, 0o4755);
        assert_eq!((e.uid, e.gid), (1000, 5_000_000));
        assert_eq!(e.xattrs, vec![(b"user.a".to_vec(), b"1".to_vec())]);
        let mut data = Vec::new();
        while r
            .read_data(2, &mut |b| {
                data.extend_from_slice(b);
                Ok(())
            })
            .unwrap()
            > 0
        {}
        assert_eq!(data, b"hello");
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.kind, EntryType::Symlink);
        assert_eq!(e.link.len(), 200);
        assert!(r.next_entry().unwrap().is_none());
        assert!(r.next_entry().unwrap().is_none());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_numeric(b"0000644\0"), Ok(0o644));
        assert_eq!(parse_numeric(b"   644 \0"), Ok(0o644));
        assert_eq!(parse_numeric(b"\0\0\0\0"), Ok(0));
        assert_eq!(parse_numeric(b"0009"), Err(()));
        assert_eq!(parse_numeric(b"12 3"), Err(()));
        assert_eq!(parse_numeric(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0]), Ok(256));
        assert_eq!(parse_numeric(&[0xff; 8]), Ok(-1));
        assert_eq!(
            parse_numeric(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(())
        );
        assert_eq!(parse_pax_time(b"1.5"), Ok((1, 500_000_000)));
        assert_eq!(parse_pax_time(b"-1.25"), Ok((-2, 750_000_000)));
        assert!(parse_pax_time(b"1e5").is_err());
        assert!(parse_pax_time(b"").is_err());
    }

    #[test]
    fn pax_errors() {
        let mut p = Pax::default();
        assert!(parse_pax(b"10 path=a\n", &mut p).is_ok());
        assert_eq!(p.path.as_deref(), Some(&b"a"[..]));
        assert!(parse_pax(b"99 path=a\n", &mut p).is_err());
        assert!(parse_pax(b"3 a", &mut p).is_err());
        assert!(parse_pax(b"x path=a\n", &mut p).is_err());
        assert!(parse_pax(b"10 pathXa\n", &mut p).is_err());
        assert!(parse_pax(b"18446744073709551617 a=b\n", &mut p).is_err());
        assert!(parse_pax(b"12 size=-1\n", &mut p).is_err());
        assert!(parse_pax(b"10 path=a\n\0\0\0", &mut p).is_ok());
    }

    #[test]
    fn garbage_is_not_a_tar() {
        let junk = vec![0x41u8; 2000];
        match reader(&junk).next_entry() {
            Err(LayerError::Malformed { offset: 0, reason }) => {
                assert!(reason.contains("not a tar"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncation_names_the_entry() {
        let tar = entry_bytes(b"file", Kind::Regular, &[7u8; 1000], b"");
        let cut = &tar[..tar.len() - 600];
        let mut r = reader(cut);
        r.next_entry().unwrap().unwrap();
        let err = loop {
            match r.read_data(usize::MAX, &mut |_| Ok(())) {
                Ok(0) => panic!("no error"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(
            matches!(err, LayerError::Truncated { entry: Some(ref e), .. } if e == "file"),
            "{err}"
        );
        // And mid-header.
        let mut r = reader(&tar[..300]);
        assert!(matches!(r.next_entry(), Err(LayerError::Truncated { .. })));
    }

    #[test]
    fn oversized_pax_header_is_refused_before_reading() {
        let mut blk = [0u8; 512];
        blk[..4].copy_from_slice(b"evil");
        blk[100..108].copy_from_slice(b"0000644\0");
        blk[124..136].copy_from_slice(b"77777777777\0");
        blk[156] = b'x';
        blk[257..265].copy_from_slice(b"ustar\x0000");
        blk[148..156].fill(b' ');
        let sum: u32 = blk.iter().map(|&b| u32::from(b)).sum();
        blk[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        match reader(&blk).next_entry() {
            Err(LayerError::MalformedEntry { entry, reason }) => {
                assert_eq!(entry, "evil");
                assert!(reason.contains("exceeds"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
