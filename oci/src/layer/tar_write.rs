//! Tar header encoding, byte for byte as Go's `archive/tar` writes headers with
//! `Format = FormatPAX` (what moby's and containerd's layer writers ask for):
//!
//! * a ustar block (`ustar\0` `00`), numbers in zero-padded octal, the name in
//!   the name field only (no prefix split), uname/gname empty;
//! * when a value does not fit (name or link target longer than 100 bytes or
//!   not ASCII, size >= 8 GiB, ids >= 2^21, mtime out of range) or there are
//!   xattrs, a PAX extended header (`x`, named `dir/PaxHeaders.0/file`) with
//!   its records sorted by key comes first and the ustar field holds what
//!   fits (or 0);
//! * device numbers too large for octal use GNU base-256 (PAX has no key for
//!   them);
//! * the archive ends with two zero blocks and no further padding.

pub(crate) const BLOCK: usize = 512;

/// Largest value of a 12-byte octal field (11 digits).
const MAX_OCTAL_12: u64 = 0o77777777777;
/// Largest value of an 8-byte octal field (7 digits).
const MAX_OCTAL_8: u64 = 0o7777777;

/// Tar entry types a layer writer emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Regular,
    Hardlink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::Regular => b'0',
            Kind::Hardlink => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        }
    }
}

/// One entry's header. `name` is the full name (directories end in `/`).
#[derive(Debug, Clone)]
pub(crate) struct Header<'a> {
    pub name: &'a [u8],
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub link: &'a [u8],
    pub dev_major: u64,
    pub dev_minor: u64,
    /// Extended attributes, written as `SCHILY.xattr.<name>` records.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Why a header cannot be encoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EncodeError {
    /// A name or link target contains NUL.
    Nul(&'static str),
    /// An xattr name contains `=` or NUL, or is empty.
    XattrName(Vec<u8>),
    /// The PAX records exceed Go's 1 MiB limit for special files.
    TooLarge,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::Nul(what) => write!(f, "{what} contains a NUL byte"),
            EncodeError::XattrName(n) => write!(
                f,
                "xattr name {:?} cannot be stored in a tar PAX record",
                String::from_utf8_lossy(n)
            ),
            EncodeError::TooLarge => write!(f, "extended attributes exceed 1 MiB"),
        }
    }
}

/// Largest PAX extended header Go's reader accepts.
pub(crate) const MAX_PAX_SIZE: usize = 1 << 20;

/// Appends the header blocks of `h` (a PAX header first when needed) to `out`.
pub(crate) fn encode_header(h: &Header<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if h.name.contains(&0) {
        return Err(EncodeError::Nul("name"));
    }
    if h.link.contains(&0) {
        return Err(EncodeError::Nul("link target"));
    }

    // PAX records, keyed and later sorted by key bytes as Go does.
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    if h.name.len() > 100 || !h.name.is_ascii() {
        records.push((b"path".to_vec(), h.name.to_vec()));
    }
    if h.link.len() > 100 || !h.link.is_ascii() {
        records.push((b"linkpath".to_vec(), h.link.to_vec()));
    }
    if h.size > MAX_OCTAL_12 {
        records.push((b"size".to_vec(), h.size.to_string().into_bytes()));
    }
    if h.uid > MAX_OCTAL_8 {
        records.push((b"uid".to_vec(), h.uid.to_string().into_bytes()));
    }
    if h.gid > MAX_OCTAL_8 {
        records.push((b"gid".to_vec(), h.gid.to_string().into_bytes()));
    }
    let mtime_fits = h.mtime >= 0 && (h.mtime as u64) <= MAX_OCTAL_12;
    if !mtime_fits {
        records.push((b"mtime".to_vec(), h.mtime.to_string().into_bytes()));
    }
    for (name, value) in h.xattrs {
        if name.is_empty() || name.contains(&b'=') || name.contains(&0) {
            return Err(EncodeError::XattrName(name.clone()));
        }
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        records.push((key, value.clone()));
    }

    if !records.is_empty() {
        records.sort_by(|a, b| a.0.cmp(&b.0));
        let mut data = Vec::new();
        for (k, v) in &records {
            push_pax_record(&mut data, k, v);
        }
        if data.len() > MAX_PAX_SIZE {
            return Err(EncodeError::TooLarge);
        }
        let mut blk = [0u8; BLOCK];
        put_str(&mut blk[0..100], &pax_header_name(h.name));
        put_octal(&mut blk[100..108], 0);
        put_octal(&mut blk[108..116], 0);
        put_octal(&mut blk[116..124], 0);
        put_octal(&mut blk[124..136], data.len() as u64);
        put_octal(&mut blk[136..148], 0);
        blk[156] = b'x';
        put_magic(&mut blk);
        put_checksum(&mut blk);
        out.extend_from_slice(&blk);
        out.extend_from_slice(&data);
        pad(out, data.len() as u64);
    }

    let mut blk = [0u8; BLOCK];
    put_str(&mut blk[0..100], &to_ascii(h.name));
    put_octal(&mut blk[100..108], u64::from(h.mode & 0o7777));
    put_octal(
        &mut blk[108..116],
        if h.uid > MAX_OCTAL_8 { 0 } else { h.uid },
    );
    put_octal(
        &mut blk[116..124],
        if h.gid > MAX_OCTAL_8 { 0 } else { h.gid },
    );
    put_octal(
        &mut blk[124..136],
        if h.size > MAX_OCTAL_12 { 0 } else { h.size },
    );
    put_octal(
        &mut blk[136..148],
        if mtime_fits { h.mtime as u64 } else { 0 },
    );
    blk[156] = h.kind.flag();
    put_str(&mut blk[157..257], &to_ascii(h.link));
    put_magic(&mut blk);
    // uname and gname stay empty: layers carry numeric ids only.
    put_number8(&mut blk[329..337], h.dev_major);
    put_number8(&mut blk[337..345], h.dev_minor);
    put_checksum(&mut blk);
    out.extend_from_slice(&blk);
    Ok(())
}

/// Appends zeros up to the next block boundary after `len` data bytes.
pub(crate) fn pad(out: &mut Vec<u8>, len: u64) {
    let rem = (len % BLOCK as u64) as usize;
    if rem != 0 {
        out.extend_from_slice(&[0u8; BLOCK][..BLOCK - rem]);
    }
}

/// Number of zero bytes that follow `len` data bytes.
pub(crate) fn padding(len: u64) -> usize {
    let rem = (len % BLOCK as u64) as usize;
    if rem == 0 { 0 } else { BLOCK - rem }
}

/// The end-of-archive marker.
pub(crate) const END_OF_ARCHIVE: [u8; 2 * BLOCK] = [0u8; 2 * BLOCK];

/// `"%d %s=%s\n"` where the length counts itself.
fn push_pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3;
    let mut size = base + base.to_string().len();
    if size.to_string().len() + base != size {
        size = base + size.to_string().len();
    }
    out.extend_from_slice(size.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Go: `path.Join(dir, "PaxHeaders.0", file)`, ASCII only, cut at 100 bytes,
/// trailing slashes trimmed.
fn pax_header_name(name: &[u8]) -> Vec<u8> {
    let (dir, file) = match name.iter().rposition(|&b| b == b'/') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => (&name[..0], name),
    };
    let mut p = Vec::with_capacity(name.len() + 14);
    let dir = trim_trailing_slashes(dir);
    if !dir.is_empty() {
        p.extend_from_slice(dir);
        p.push(b'/');
    }
    p.extend_from_slice(b"PaxHeaders.0");
    if !file.is_empty() {
        p.push(b'/');
        p.extend_from_slice(file);
    }
    let mut p = to_ascii(&p);
    p.truncate(100);
    let keep = trim_trailing_slashes(&p).len();
    p.truncate(keep);
    p
}

fn trim_trailing_slashes(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && b[end - 1] == b'/' {
        end -= 1;
    }
    &b[..end]
}

/// Go's `toASCII`: drops every non-ASCII byte.
fn to_ascii(s: &[u8]) -> Vec<u8> {
    s.iter().copied().filter(|b| b.is_ascii()).collect()
}

/// Go's `formatString`: copy what fits; NUL-terminate if there is room; if
/// the cut leaves a trailing slash, clear the trailing slashes (so old readers
/// do not see a directory).
fn put_str(field: &mut [u8], s: &[u8]) {
    let n = s.len().min(field.len());
    field[..n].copy_from_slice(&s[..n]);
    if s.len() < field.len() {
        field[s.len()] = 0;
    }
    if s.len() > field.len() && field[field.len() - 1] == b'/' {
        let keep = trim_trailing_slashes(&s[..field.len() - 1]).len();
        field[keep] = 0;
    }
}

/// Zero-padded octal leaving room for a NUL, as Go's `formatOctal`. The
/// caller guarantees the value fits.
fn put_octal(field: &mut [u8], v: u64) {
    let s = format!("{v:o}");
    let width = field.len() - 1;
    let mut text = Vec::with_capacity(width);
    if s.len() < width {
        text.resize(width - s.len(), b'0');
    }
    text.extend_from_slice(s.as_bytes());
    put_str(field, &text);
}

/// Octal when it fits an 8-byte field, GNU base-256 otherwise.
fn put_number8(field: &mut [u8], v: u64) {
    if v <= MAX_OCTAL_8 {
        put_octal(field, v);
    } else {
        field.fill(0);
        field[0] = 0x80;
        let bytes = v.to_be_bytes();
        // 7 bytes after the marker hold values below 2^56.
        field[1..].copy_from_slice(&bytes[1..]);
    }
}

fn put_magic(blk: &mut [u8; BLOCK]) {
    blk[257..263].copy_from_slice(b"ustar\0");
    blk[263..265].copy_from_slice(b"00");
}

/// Unsigned sum of the block with the checksum field as spaces, written as six
/// octal digits, NUL, space.
fn put_checksum(blk: &mut [u8; BLOCK]) {
    blk[148..156].fill(b' ');
    let sum: u32 = blk.iter().map(|&b| u32::from(b)).sum();
    put_octal(&mut blk[148..155], u64::from(sum));
    blk[155] = b' ';
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr<'a>(name: &'a [u8], kind: Kind) -> Header<'a> {
        Header {
            name,
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 1_700_000_000,
            link: b"",
            dev_major: 0,
            dev_minor: 0,
            xattrs: &[],
        }
    }

    #[test]
    fn pax_records_count_their_own_length() {
        let mut v = Vec::new();
        push_pax_record(&mut v, b"path", b"a");
        assert_eq!(v, b"9 path=a\n");
        for n in 0..300 {
            let mut v = Vec::new();
            let val = vec![b'x'; n];
            push_pax_record(&mut v, b"path", &val);
            let len: usize = std::str::from_utf8(&v[..v.iter().position(|&b| b == b' ').unwrap()])
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, v.len(), "value length {n}");
        }
    }

    #[test]
    fn pax_header_names_match_go() {
        assert_eq!(pax_header_name(b"a/b/c"), b"a/b/PaxHeaders.0/c");
        assert_eq!(pax_header_name(b"c"), b"PaxHeaders.0/c");
        assert_eq!(pax_header_name(b"etc/"), b"etc/PaxHeaders.0");
        let long = [b'x'; 150];
        assert_eq!(pax_header_name(&long).len(), 100);
    }

    #[test]
    fn short_entry_is_one_ustar_block() {
        let mut out = Vec::new();
        encode_header(&hdr(b"etc/passwd", Kind::Regular), &mut out).unwrap();
        assert_eq!(out.len(), 512);
        assert_eq!(&out[..10], b"etc/passwd");
        assert_eq!(&out[100..108], b"0000644\0");
        assert_eq!(&out[257..265], b"ustar\x0000");
        assert_eq!(&out[329..337], b"0000000\0");
        // The checksum checks out the way readers compute it.
        let mut b = out.clone();
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        assert_eq!(&out[148..156], format!("{sum:06o}\0 ").as_bytes());
    }

    #[test]
    fn long_names_and_xattrs_get_a_pax_header() {
        let name = vec![b'n'; 120];
        let xattrs = vec![(b"user.k".to_vec(), b"v\0\n".to_vec())];
        let mut h = hdr(&name, Kind::Regular);
        h.xattrs = &xattrs;
        let mut out = Vec::new();
        encode_header(&h, &mut out).unwrap();
        assert_eq!(out.len(), 3 * 512);
        assert_eq!(out[156], b'x');
        let data = &out[512..1024];
        let text = String::from_utf8_lossy(data);
        assert!(text.starts_with("27 SCHILY.xattr.user.k=v\0\n"), "{text:?}");
        assert!(text.contains(&format!("130 path={}\n", "n".repeat(120))));
        assert_eq!(&out[1024..1124], &name[..100]);
    }

    #[test]
    fn rejects_unencodable() {
        let mut out = Vec::new();
        assert!(encode_header(&hdr(b"a\0b", Kind::Regular), &mut out).is_err());
        let x = vec![(b"user.a=b".to_vec(), Vec::new())];
        let mut h = hdr(b"a", Kind::Regular);
        h.xattrs = &x;
        assert!(matches!(
            encode_header(&h, &mut out),
            Err(EncodeError::XattrName(_))
        ));
    }

    #[test]
    fn big_values() {
        let mut h = hdr(b"big", Kind::Regular);
        h.size = 10 << 30;
        h.uid = 5_000_000;
        h.mtime = -5;
        h.dev_major = 1 << 30;
        let mut out = Vec::new();
        encode_header(&h, &mut out).unwrap();
        let text = String::from_utf8_lossy(&out[512..1024]);
        assert!(text.contains("size=10737418240\n"));
        assert!(text.contains("uid=5000000\n"));
        assert!(text.contains("mtime=-5\n"));
        assert_eq!(out[1024 + 329], 0x80);
    }
}
