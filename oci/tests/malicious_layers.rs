//! Hostile layers: each is built here byte by byte (the `tar` crate refuses
//! to write most of them), applied into a target inside a temp dir, and must
//! be refused with the right error naming the entry, or land inside the
//! target. Next to the target sits a sentinel directory whose listing and
//! contents must never change, and nothing else may appear beside them.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use berth_oci::layer::{ApplyOptions, LayerError, WhiteoutMode, apply_layer};
use proptest::prelude::*;
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// a raw tar writer

const BLOCK: usize = 512;

#[derive(Default)]
struct RawTar {
    buf: Vec<u8>,
}

fn octal(field: &mut [u8], v: u64) {
    let width = field.len() - 1;
    let s = format!("{v:0width$o}");
    if s.len() <= width {
        field[..width].copy_from_slice(s.as_bytes());
        field[width] = 0;
    } else {
        // GNU base-256 for values octal cannot hold.
        field.fill(0);
        field[0] = 0x80;
        let b = v.to_be_bytes();
        let n = field.len();
        field[n - 8..].copy_from_slice(&b);
    }
}

impl RawTar {
    /// One header block, fields as given, no validation at all.
    fn header(&mut self, name: &[u8], flag: u8, size: u64, link: &[u8], mode: u64) {
        let mut b = [0u8; BLOCK];
        let n = name.len().min(100);
        b[..n].copy_from_slice(&name[..n]);
        octal(&mut b[100..108], mode);
        octal(&mut b[108..116], 0);
        octal(&mut b[116..124], 0);
        octal(&mut b[124..136], size);
        octal(&mut b[136..148], 1_600_000_000);
        b[156] = flag;
        let l = link.len().min(100);
        b[157..157 + l].copy_from_slice(&link[..l]);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        octal(&mut b[329..337], 0);
        octal(&mut b[337..345], 0);
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.buf.extend_from_slice(&b);
    }

    fn data(&mut self, d: &[u8]) {
        self.buf.extend_from_slice(d);
        let pad = (BLOCK - d.len() % BLOCK) % BLOCK;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
    }

    fn file(mut self, name: &str, content: &[u8]) -> Self {
        self.header(name.as_bytes(), b'0', content.len() as u64, b"", 0o644);
        self.data(content);
        self
    }

    fn dir(mut self, name: &str) -> Self {
        self.header(name.as_bytes(), b'5', 0, b"", 0o755);
        self
    }

    fn symlink(mut self, name: &str, target: &str) -> Self {
        self.header(name.as_bytes(), b'2', 0, target.as_bytes(), 0o777);
        self
    }

    fn hardlink(mut self, name: &str, target: &str) -> Self {
        self.header(name.as_bytes(), b'1', 0, target.as_bytes(), 0o644);
        self
    }

    /// A PAX extended header with these records, for the next entry.
    fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let base = k.len() + v.len() + 3;
            let mut len = base + base.to_string().len();
            if len.to_string().len() + base != len {
                len = base + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        self.header(b"PaxHeaders.0/x", b'x', data.len() as u64, b"", 0);
        self.data(&data);
        self
    }

    fn raw(mut self, bytes: &[u8]) -> Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    fn end(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&[0u8; 2 * BLOCK]);
        self.buf
    }
}

fn tar() -> RawTar {
    RawTar::default()
}

// ---------------------------------------------------------------------------
// the arena: target and sentinel side by side

struct Arena {
    _tmp: TempDir,
    base: PathBuf,
    target: PathBuf,
    sentinel: PathBuf,
    before: BTreeMap<PathBuf, String>,
}

/// Path, type, mode, size, link count and content of everything below `dir`.
fn listing(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let content = if m.file_type().is_file() {
                String::from_utf8_lossy(&fs::read(&p).unwrap()).into_owned()
            } else if m.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else {
                String::new()
            };
            out.insert(
                p.clone(),
                format!("{:o} {} {} {}", m.mode(), m.size(), m.nlink(), content),
            );
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

impl Arena {
    fn new() -> Arena {
        let tmp = TempDir::new().unwrap();
        let base = tmp.path().to_path_buf();
        let target = base.join("target");
        let sentinel = base.join("sentinel");
        fs::create_dir(&target).unwrap();
        fs::create_dir(&sentinel).unwrap();
        fs::write(sentinel.join("secret"), "do not touch").unwrap();
        fs::write(sentinel.join("victim"), "original").unwrap();
        fs::create_dir(sentinel.join("dir")).unwrap();
        fs::write(sentinel.join("dir/inner"), "inner").unwrap();
        let mut a = Arena {
            _tmp: tmp,
            base,
            target,
            sentinel,
            before: BTreeMap::new(),
        };
        a.before = a.outside();
        a
    }

    /// Everything in the temp dir except the target's contents.
    fn outside(&self) -> BTreeMap<PathBuf, String> {
        let mut l = listing(&self.sentinel);
        for e in fs::read_dir(&self.base).unwrap() {
            let p = e.unwrap().path();
            l.insert(
                p.clone(),
                if p == self.target {
                    "target".into()
                } else {
                    "?".into()
                },
            );
        }
        l
    }

    fn apply_with(&self, layer: &[u8], mode: WhiteoutMode) -> Result<(), LayerError> {
        let opts = ApplyOptions {
            whiteouts: mode,
            preserve_owner: nix::unistd::geteuid().is_root(),
            ..ApplyOptions::default()
        };
        let r = apply_layer(layer, &self.target, &opts).map(|_| ());
        self.assert_outside_untouched();
        r
    }

    fn apply(&self, layer: &[u8]) -> Result<(), LayerError> {
        self.apply_with(layer, WhiteoutMode::Delete)
    }

    fn assert_outside_untouched(&self) {
        assert_eq!(
            self.before,
            self.outside(),
            "something outside the target changed"
        );
    }

    /// The sentinel's absolute path as a name inside the layer.
    fn sentinel_abs(&self) -> String {
        self.sentinel.display().to_string()
    }
}

fn expect_err(r: Result<(), LayerError>) -> LayerError {
    match r {
        Ok(()) => panic!("the layer was accepted"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "one-line message: {msg}");
            e
        }
    }
}

// ---------------------------------------------------------------------------
// names

#[test]
fn dotdot_name_is_refused() {
    let a = Arena::new();
    let e = expect_err(a.apply(&tar().file("../sentinel/victim", b"pwned").end()));
    assert!(
        matches!(e, LayerError::PathEscapes { ref entry } if entry == "../sentinel/victim"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        r#"layer entry "../sentinel/victim": path escapes the target directory"#
    );
}

#[test]
fn inner_dotdot_climbing_out_is_refused() {
    let a = Arena::new();
    let e = expect_err(a.apply(&tar().dir("a/").file("a/../../sentinel/new", b"x").end()));
    assert!(
        matches!(e, LayerError::PathEscapes { ref entry } if entry == "a/../../sentinel/new"),
        "{e}"
    );
}

#[test]
fn absolute_name_is_refused() {
    let a = Arena::new();
    let name = format!("{}/victim", a.sentinel_abs());
    let e = expect_err(a.apply(&tar().file(&name, b"pwned").end()));
    assert!(
        matches!(e, LayerError::InvalidPath { ref entry, .. } if *entry == name),
        "{e}"
    );
    assert!(e.to_string().contains("absolute"));
}

#[test]
fn nul_in_pax_path_is_refused() {
    let a = Arena::new();
    let layer = tar()
        .pax(&[("path", b"ok\0../../x")])
        .file("ok", b"x")
        .end();
    let e = expect_err(a.apply(&layer));
    assert!(matches!(e, LayerError::MalformedEntry { .. }), "{e}");
    assert!(e.to_string().contains("NUL"), "{e}");
}

#[test]
fn long_pax_name_with_dotdot_is_refused() {
    let a = Arena::new();
    let long = format!("{}{}sentinel/victim", "d/".repeat(60), "../".repeat(61));
    assert!(long.len() > 255);
    let layer = tar()
        .pax(&[("path", long.as_bytes())])
        .file("short", b"pwned")
        .end();
    let e = expect_err(a.apply(&layer));
    assert!(
        matches!(e, LayerError::PathEscapes { ref entry } if *entry == long),
        "{e}"
    );
}

// ---------------------------------------------------------------------------
// symlinks

#[test]
fn absolute_symlink_is_confined_like_a_chroot() {
    let a = Arena::new();
    let layer = tar()
        .symlink("evil", &a.sentinel_abs())
        .file("evil/victim", b"pwned")
        .end();
    a.apply(&layer).unwrap();
    // Written inside the target, at target/<sentinel path>/victim.
    let inside = a
        .target
        .join(a.sentinel.strip_prefix("/").unwrap())
        .join("victim");
    assert_eq!(fs::read(inside).unwrap(), b"pwned");
}

#[test]
fn relative_symlink_escape_is_refused() {
    let a = Arena::new();
    let layer = tar().symlink("evil", "../../..").file("evil/f", b"x").end();
    let e = expect_err(a.apply(&layer));
    match e {
        LayerError::SymlinkEscapes {
            ref entry,
            ref symlink,
        } => {
            assert_eq!(entry, "evil/f");
            assert_eq!(symlink, "evil");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn symlink_chain_escape_is_refused() {
    let a = Arena::new();
    let layer = tar()
        .dir("x/")
        .symlink("l1", "x/l2")
        .symlink("x/l2", "../l3")
        .symlink("l3", "../sentinel")
        .file("l1/victim", b"pwned")
        .end();
    let e = expect_err(a.apply(&layer));
    assert!(
        matches!(e, LayerError::SymlinkEscapes { ref entry, .. } if entry == "l1/victim"),
        "{e}"
    );
}

#[test]
fn directory_replaced_by_symlink_in_the_same_layer_is_not_trusted() {
    // The resolver caches "d" as a directory; the symlink that replaces it
    // must be seen by the next entry.
    let a = Arena::new();
    let layer = tar()
        .dir("d/")
        .file("d/ok", b"fine")
        .symlink("d", "../sentinel")
        .file("d/victim", b"pwned")
        .end();
    let e = expect_err(a.apply(&layer));
    assert!(
        matches!(e, LayerError::SymlinkEscapes { ref entry, .. } if entry == "d/victim"),
        "{e}"
    );
}

#[test]
fn symlinked_parent_made_earlier_in_the_layer_stays_inside() {
    let a = Arena::new();
    let layer = tar()
        .dir("real/")
        .symlink("var", "/real")
        .dir("var/run/")
        .file("var/run/pid", b"1")
        .end();
    a.apply(&layer).unwrap();
    assert_eq!(fs::read(a.target.join("real/run/pid")).unwrap(), b"1");
}

#[test]
fn symlink_loop_is_refused() {
    let a = Arena::new();
    let layer = tar()
        .symlink("a", "b")
        .symlink("b", "a")
        .file("a/f", b"x")
        .end();
    let e = expect_err(a.apply(&layer));
    assert!(
        matches!(e, LayerError::TooManySymlinks { ref entry } if entry == "a/f"),
        "{e}"
    );
}

#[test]
fn file_over_a_symlink_replaces_the_link() {
    let a = Arena::new();
    let victim = format!("{}/victim", a.sentinel_abs());
    let layer = tar()
        .symlink("f", &victim)
        .file("f", b"new content")
        .symlink("rel", "../sentinel/victim")
        .file("rel", b"also new")
        .end();
    a.apply(&layer).unwrap();
    for n in ["f", "rel"] {
        let m = fs::symlink_metadata(a.target.join(n)).unwrap();
        assert!(m.file_type().is_file(), "{n} is a regular file now");
    }
    assert_eq!(fs::read(a.target.join("f")).unwrap(), b"new content");
}

#[test]
fn directory_over_a_symlink_replaces_the_link() {
    let a = Arena::new();
    let layer = tar()
        .symlink("d", "../sentinel")
        .dir("d/")
        .file("d/victim", b"x")
        .end();
    a.apply(&layer).unwrap();
    assert!(fs::symlink_metadata(a.target.join("d")).unwrap().is_dir());
}

// ---------------------------------------------------------------------------
// hardlinks

#[test]
fn hardlink_to_dotdot_is_refused() {
    let a = Arena::new();
    let e = expect_err(a.apply(&tar().hardlink("h", "../sentinel/secret").end()));
    match e {
        LayerError::InvalidLink {
            ref entry,
            ref target,
            reason,
        } => {
            assert_eq!(entry, "h");
            assert_eq!(target, "../sentinel/secret");
            assert!(reason.contains("escapes"));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn hardlink_to_absolute_path_is_refused() {
    let a = Arena::new();
    let target = format!("{}/secret", a.sentinel_abs());
    let e = expect_err(a.apply(&tar().hardlink("h", &target).end()));
    assert!(
        matches!(e, LayerError::InvalidLink { ref entry, reason, .. } if entry == "h" && reason.contains("absolute")),
        "{e}"
    );
}

#[test]
fn hardlink_through_a_symlinked_dir_never_reaches_outside() {
    let a = Arena::new();
    // Absolute link: resolved inside the target, where there is no secret.
    let layer = tar()
        .symlink("s", &a.sentinel_abs())
        .hardlink("h", "s/secret")
        .end();
    let e = expect_err(a.apply(&layer));
    assert!(
        matches!(e, LayerError::InvalidLink { ref entry, reason, .. } if entry == "h" && reason == "does not exist"),
        "{e}"
    );
    // Relative link climbing out: refused as an escape.
    let a = Arena::new();
    let layer = tar()
        .symlink("s2", "../..")
        .hardlink("h2", "s2/sentinel/secret")
        .end();
    let e = expect_err(a.apply(&layer));
    assert!(
        matches!(e, LayerError::SymlinkEscapes { ref entry, .. } if entry == "h2"),
        "{e}"
    );
}

#[test]
fn hardlink_then_file_does_not_write_through_the_link() {
    let a = Arena::new();
    let layer = tar()
        .file("orig", b"original")
        .hardlink("alias", "orig")
        .file("alias", b"replaced")
        .end();
    a.apply(&layer).unwrap();
    assert_eq!(fs::read(a.target.join("orig")).unwrap(), b"original");
    assert_eq!(fs::read(a.target.join("alias")).unwrap(), b"replaced");
}

// ---------------------------------------------------------------------------
// whiteouts

#[test]
fn whiteout_escaping_by_name_is_refused() {
    let a = Arena::new();
    let e = expect_err(a.apply(&tar().file("../.wh.sentinel", b"").end()));
    assert!(
        matches!(e, LayerError::PathEscapes { ref entry } if entry == "../.wh.sentinel"),
        "{e}"
    );
    let e = expect_err(a.apply_with(
        &tar().file("../sentinel/.wh.victim", b"").end(),
        WhiteoutMode::Overlay,
    ));
    assert!(matches!(e, LayerError::PathEscapes { .. }), "{e}");
}

#[test]
fn whiteout_through_symlinks_stays_inside() {
    let a = Arena::new();
    let layer = tar()
        .symlink("up", "../../")
        .file("up/.wh.sentinel", b"")
        .end();
    let e = expect_err(a.apply(&layer));
    assert!(
        matches!(e, LayerError::SymlinkEscapes { ref entry, .. } if entry == "up/.wh.sentinel"),
        "{e}"
    );

    // An absolute symlink: resolved inside, where there is nothing to delete.
    let a = Arena::new();
    let layer = tar()
        .symlink("abs", &a.sentinel_abs())
        .file("abs/.wh.victim", b"")
        .file("abs/.wh..wh..opq", b"")
        .end();
    a.apply(&layer).unwrap();
}

#[test]
fn whiteout_of_dot_names_is_refused() {
    let a = Arena::new();
    for name in [".wh..", "d/.wh...", ".wh."] {
        let layer = tar().dir("d/").file(name, b"").end();
        let e = expect_err(a.apply(&layer));
        assert!(
            matches!(e, LayerError::InvalidPath { ref entry, .. } if entry == name),
            "{name}: {e}"
        );
    }
}

#[test]
fn overlay_xattrs_from_a_layer_are_never_applied() {
    if !nix::unistd::geteuid().is_root() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("needs root on CI");
        }
        eprintln!("skipping: needs root");
        return;
    }
    let a = Arena::new();
    let layer = tar()
        .pax(&[
            ("SCHILY.xattr.trusted.overlay.redirect", b"/sentinel"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ])
        .dir("d/")
        .end();
    a.apply_with(&layer, WhiteoutMode::Overlay).unwrap();
    let p = std::ffi::CString::new(a.target.join("d").to_str().unwrap()).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: valid path and buffer.
    let n = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let names = String::from_utf8_lossy(&buf[..n.max(0) as usize]).into_owned();
    assert!(!names.contains("overlay"), "{names}");
}

// ---------------------------------------------------------------------------
// broken streams

#[test]
fn huge_size_header_is_a_truncation_not_an_allocation() {
    let a = Arena::new();
    let mut t = tar();
    t.header(b"huge", b'0', 1 << 40, b"", 0o644);
    let layer = t.raw(&[1u8; 100]).end();
    let e = expect_err(a.apply(&layer));
    assert!(
        matches!(e, LayerError::Truncated { entry: Some(ref n), .. } if n == "huge"),
        "{e}"
    );
}

#[test]
fn huge_pax_header_is_refused() {
    let a = Arena::new();
    let mut t = tar();
    t.header(b"PaxHeaders.0/big", b'x', 100 << 20, b"", 0);
    let layer = t.raw(&[b'9'; 4096]).end();
    let e = expect_err(a.apply(&layer));
    match e {
        LayerError::MalformedEntry {
            ref entry,
            ref reason,
        } => {
            assert_eq!(entry, "PaxHeaders.0/big");
            assert!(reason.contains("exceeds"), "{reason}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn absurd_pax_record_length_is_refused() {
    let a = Arena::new();
    let mut t = tar();
    let rec = b"99999999999 path=x\n";
    t.header(b"PaxHeaders.0/f", b'x', rec.len() as u64, b"", 0);
    t.data(rec);
    let layer = t.file("f", b"x").end();
    let e = expect_err(a.apply(&layer));
    assert!(
        matches!(e, LayerError::MalformedEntry { ref reason, .. } if reason.contains("PAX")),
        "{e}"
    );
}

#[test]
fn truncated_archive_is_refused() {
    let a = Arena::new();
    let full = tar().file("a", &[7u8; 3000]).file("b", b"b").end();
    let e = expect_err(a.apply(&full[..512 + 1000]));
    assert!(
        matches!(e, LayerError::Truncated { entry: Some(ref n), .. } if n == "a"),
        "{e}"
    );
    let e = expect_err(a.apply(&full[..512 * 7 + 100]));
    assert!(matches!(e, LayerError::Truncated { .. }), "{e}");
}

#[test]
fn garbage_is_refused() {
    let a = Arena::new();
    let junk: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 3) as u8).collect();
    let e = expect_err(a.apply(&junk));
    assert!(matches!(e, LayerError::Malformed { offset: 0, .. }), "{e}");
    // Valid entries, then garbage where the next header should be.
    let mut layer = tar().file("ok", b"fine").buf;
    layer.extend_from_slice(&[0x55; 1024]);
    let e = expect_err(a.apply(&layer));
    assert!(
        matches!(e, LayerError::Malformed { offset: 1024, .. }),
        "{e}"
    );
}

#[test]
fn truncated_gzip_is_refused() {
    let a = Arena::new();
    let plain = tar().file("a", &vec![b'z'; 200_000]).file("b", b"b").end();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    for cut in [gz.len() - 4, gz.len() / 2, 15] {
        let e = expect_err(a.apply(&gz[..cut]));
        assert!(
            matches!(
                e,
                LayerError::Decompress {
                    compression: berth_oci::layer::Compression::Gzip,
                    ..
                }
            ),
            "cut at {cut}: {e}"
        );
    }
    // A corrupt byte in the middle.
    let mut bad = gz.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let e = expect_err(a.apply(&bad));
    assert!(
        matches!(
            e,
            LayerError::Decompress { .. } | LayerError::Malformed { .. }
        ),
        "{e}"
    );
}

#[test]
fn truncated_zstd_is_refused() {
    let a = Arena::new();
    let plain = tar().file("a", &vec![b'z'; 200_000]).end();
    let z = zstd::encode_all(&plain[..], 3).unwrap();
    let e = expect_err(a.apply(&z[..z.len() - 3]));
    assert!(
        matches!(
            e,
            LayerError::Decompress { .. } | LayerError::Truncated { .. }
        ),
        "{e}"
    );
}

#[test]
fn unknown_entry_types_are_refused() {
    let a = Arena::new();
    for (flag, what) in [(b'S', "sparse"), (b'V', "volume"), (b'Z', "'Z'")] {
        let mut t = tar();
        t.header(b"odd", flag, 0, b"", 0o644);
        let e = expect_err(a.apply(&t.end()));
        assert!(
            matches!(e, LayerError::UnsupportedEntry { ref entry, ref kind } if entry == "odd" && kind.contains(what)),
            "{e}"
        );
    }
}

#[test]
fn non_directory_for_the_root_is_refused() {
    let a = Arena::new();
    let e = expect_err(a.apply(&tar().file("./", b"x").end()));
    assert!(matches!(e, LayerError::InvalidPath { .. }), "{e}");
}

// ---------------------------------------------------------------------------
// fuzzing

fn valid_layer() -> Vec<u8> {
    tar()
        .dir("a/")
        .file("a/f", b"hello")
        .symlink("a/l", "../b")
        .symlink("up", "../../sentinel")
        .hardlink("a/h", "a/f")
        .pax(&[
            ("path", b"a/long-name-through-pax"),
            ("SCHILY.xattr.user.x", b"1"),
        ])
        .file("ignored", b"data")
        .dir("b/")
        .file("b/.wh.x", b"")
        .file("a/.wh..wh..opq", b"")
        .end()
}

fn fuzz_arena() -> Arena {
    let a = Arena::new();
    symlink("../sentinel", a.target.join("pre-existing-escape")).unwrap();
    let mut a = a;
    a.before = a.outside();
    a
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_bytes_never_panic_or_escape(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let a = fuzz_arena();
        let _ = a.apply(&bytes);
        let _ = a.apply_with(&bytes, WhiteoutMode::Overlay);
    }

    #[test]
    fn mutated_layers_never_panic_or_escape(
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..12),
        cut in any::<proptest::sample::Index>(),
        truncate in any::<bool>(),
        gzip in any::<bool>(),
    ) {
        let a = fuzz_arena();
        let mut layer = valid_layer();
        for (i, v) in &flips {
            let i = i.index(layer.len());
            layer[i] = *v;
        }
        if truncate {
            let n = cut.index(layer.len());
            layer.truncate(n);
        }
        if gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&layer).unwrap();
            layer = gz.finish().unwrap();
        }
        let _ = a.apply(&layer);
        let _ = a.apply_with(&layer, WhiteoutMode::Overlay);
    }
}
