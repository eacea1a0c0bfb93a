//! Layer compression: detection from magic bytes, media-type suffixes, a
//! decompressing reader and a compressing writer.

use std::fmt;
use std::io::{self, BufReader, Cursor, Read, Write};
use std::str::FromStr;

use super::LayerError;
use super::pgzip::ParallelGzEncoder;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Bytes [`Compression::detect`] needs to see.
pub(crate) const MAGIC_LEN: usize = 4;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// A plain tar (`application/vnd.oci.image.layer.v1.tar`).
    None,
    /// gzip (`...tar+gzip`), the default for docker and OCI images.
    #[default]
    Gzip,
    /// zstd (`...tar+zstd`).
    Zstd,
}

impl Compression {
    /// Recognises gzip and zstd by their magic numbers; anything else is `None`
    /// (a plain tar, or garbage that the tar reader will reject).
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if magic.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The suffix of the OCI layer media type: `""`, `"+gzip"` or `"+zstd"`.
    pub fn media_type_suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => "+gzip",
            Compression::Zstd => "+zstd",
        }
    }

    /// The OCI layer media type with this compression,
    /// e.g. `application/vnd.oci.image.layer.v1.tar+gzip`.
    pub fn oci_layer_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// The compression a layer media type announces (OCI `+gzip`/`+zstd`
    /// suffixes, docker's `.tar.gzip`/`.tar.zstd`); `None` for types that are
    /// not a tar layer.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        let mt = media_type.split(';').next().unwrap_or("").trim();
        if mt.ends_with("+gzip") || mt.ends_with(".tar.gzip") {
            Some(Compression::Gzip)
        } else if mt.ends_with("+zstd") || mt.ends_with(".tar.zstd") {
            Some(Compression::Zstd)
        } else if mt.ends_with(".tar") || mt.ends_with(".tar.foreign") {
            Some(Compression::None)
        } else {
            None
        }
    }

    /// `"none"`, `"gzip"` or `"zstd"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compression {
    type Err = LayerError;
    fn from_str(s: &str) -> Result<Self, LayerError> {
        match s {
            "none" | "uncompressed" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(LayerError::InvalidOption(format!(
                "unknown compression {other:?} (expected none, gzip or zstd)"
            ))),
        }
    }
}

/// Reads up to [`MAGIC_LEN`] bytes (fewer only at end of stream).
pub(crate) fn read_magic(r: &mut impl Read) -> io::Result<([u8; MAGIC_LEN], usize)> {
    let mut magic = [0u8; MAGIC_LEN];
    let mut n = 0;
    while n < MAGIC_LEN {
        match r.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((magic, n))
}

/// A decoder for `c` over `r`. gzip accepts multi-member streams (as Go's
/// reader does), zstd multi-frame streams.
pub(crate) fn decoder<'a, R: Read + Send + 'a>(
    r: R,
    c: Compression,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(
            BufReader::with_capacity(256 * 1024, r),
        )),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    })
}

/// A decompressing reader over `r`, the compression detected from the first
/// bytes. For code that must hash the uncompressed stream (diffIDs) of a blob.
pub fn decompress(
    mut r: impl Read + Send + 'static,
) -> io::Result<(Compression, Box<dyn Read + Send>)> {
    let (magic, n) = read_magic(&mut r)?;
    let c = Compression::detect(&magic[..n]);
    let chained = Cursor::new(magic).take(n as u64).chain(r);
    Ok((c, decoder(chained, c)?))
}

/// Validates a level for `c` and fills in the default.
pub(crate) fn check_level(c: Compression, level: Option<u32>) -> Result<u32, LayerError> {
    match c {
        Compression::None => Ok(0),
        Compression::Gzip => match level.unwrap_or(6) {
            l @ 0..=9 => Ok(l),
            l => Err(LayerError::InvalidOption(format!(
                "gzip level {l} is out of range 0-9"
            ))),
        },
        Compression::Zstd => match level.unwrap_or(3) {
            l @ 1..=22 => Ok(l),
            l => Err(LayerError::InvalidOption(format!(
                "zstd level {l} is out of range 1-22"
            ))),
        },
    }
}

/// A compressing writer; [`CompressWriter::finish`] ends the stream and hands
/// back the inner writer.
pub enum CompressWriter<W: Write> {
    /// Pass-through.
    None(W),
    /// Deterministic parallel gzip.
    Gzip(ParallelGzEncoder<W>),
    /// zstd, multithreaded through libzstd's own workers.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

/// A writer compressing with `c` into `w`. `level` as in
/// [`CreateOptions::level`](super::CreateOptions::level); `threads` 0 means one
/// per CPU. For gzip and zstd the output does not depend on `threads`.
pub fn compress_writer<W: Write>(
    w: W,
    c: Compression,
    level: Option<u32>,
    threads: usize,
) -> Result<CompressWriter<W>, LayerError> {
    let level = check_level(c, level)?;
    let threads = super::effective_threads(threads);
    Ok(match c {
        Compression::None => CompressWriter::None(w),
        Compression::Gzip => CompressWriter::Gzip(
            ParallelGzEncoder::new(w, level, threads).map_err(LayerError::Output)?,
        ),
        Compression::Zstd => {
            let mut enc =
                zstd::stream::write::Encoder::new(w, level as i32).map_err(LayerError::Output)?;
            enc.include_checksum(true).map_err(LayerError::Output)?;
            // Always at least one worker: libzstd's multithreaded mode gives the
            // same bytes for any number of workers, but not the same bytes as
            // its single-threaded mode (0 workers).
            enc.multithread(threads.clamp(1, 64) as u32)
                .map_err(LayerError::Output)?;
            CompressWriter::Zstd(enc)
        }
    })
}

impl<W: Write> CompressWriter<W> {
    /// Writes whatever the compressor still holds and the stream trailer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            CompressWriter::None(mut w) => {
                w.flush()?;
                Ok(w)
            }
            CompressWriter::Gzip(g) => g.finish(),
            CompressWriter::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for CompressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            CompressWriter::None(w) => w.write(buf),
            CompressWriter::Gzip(g) => g.write(buf),
            CompressWriter::Zstd(z) => z.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            CompressWriter::None(w) => w.write_all(buf),
            CompressWriter::Gzip(g) => g.write_all(buf),
            CompressWriter::Zstd(z) => z.write_all(buf),
        }
    }

    /// Flushes the inner writer; for gzip and zstd it does not end a block,
    /// so the output stays the same whatever the flush pattern.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            CompressWriter::None(w) => w.flush(),
            CompressWriter::Gzip(g) => g.flush(),
            CompressWriter::Zstd(z) => z.get_mut().flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::detect(&ZSTD_MAGIC), Compression::Zstd);
        assert_eq!(Compression::detect(b"bin/"), Compression::None);
        assert_eq!(Compression::detect(&[0x1f]), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
    }

    #[test]
    fn media_types() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(
                Compression::from_media_type(c.oci_layer_media_type()),
                Some(c)
            );
            assert!(c.oci_layer_media_type().ends_with(c.media_type_suffix()));
            assert_eq!(c.as_str().parse::<Compression>().unwrap(), c);
        }
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.config.v1+json"),
            None
        );
        assert!("lz4".parse::<Compression>().is_err());
    }

    #[test]
    fn roundtrip_every_compression() {
        let data: Vec<u8> = (0..700_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut w = compress_writer(Vec::new(), c, None, 3).unwrap();
            w.write_all(&data).unwrap();
            let blob = w.finish().unwrap();
            let (found, mut r) = decompress(std::io::Cursor::new(blob)).unwrap();
            assert_eq!(found, c);
            let mut back = Vec::new();
            r.read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "{c}");
        }
    }

    #[test]
    fn zstd_output_does_not_depend_on_threads() {
        let data: Vec<u8> = (0..3_000_000u32)
            .flat_map(|i| (i / 7).to_le_bytes())
            .collect();
        let blobs: Vec<Vec<u8>> = [1, 2, 4]
            .into_iter()
            .map(|t| {
                let mut w = compress_writer(Vec::new(), Compression::Zstd, Some(3), t).unwrap();
                w.write_all(&data).unwrap();
                w.finish().unwrap()
            })
            .collect();
        assert_eq!(blobs[0], blobs[1]);
        assert_eq!(blobs[0], blobs[2]);
    }

    #[test]
    fn rejects_bad_levels() {
        assert!(check_level(Compression::Gzip, Some(10)).is_err());
        assert!(check_level(Compression::Zstd, Some(0)).is_err());
        assert_eq!(check_level(Compression::Gzip, None).unwrap(), 6);
        assert_eq!(check_level(Compression::None, Some(99)).unwrap(), 0);
    }
}
