//! Layers written from real trees and applied back: every file type and its
//! metadata survives, output is deterministic, system tools read it, and
//! whiteouts work both with overlayfs and as deletions.
//!
//! Tests that need root check the effective uid: they are skipped with a
//! message when not root, and fail when CI=true (CI runs as root).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_oci::Digest;
use berth_oci::layer::{
    ApplyOptions, Compression, CreateOptions, LayerDigests, WhiteoutMode, apply_layer,
    write_diff_as_layer, write_dir_as_layer, write_upper_as_layer,
};
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// helpers

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True when the test may go on; false (after saying why) to skip.
fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} needs root and CI=true: CI must run these tests as root");
    }
    eprintln!("skipping {test}: needs root");
    false
}

fn opts(c: Compression) -> CreateOptions {
    CreateOptions {
        compression: c,
        ..CreateOptions::default()
    }
}

fn delete_mode() -> ApplyOptions {
    ApplyOptions {
        whiteouts: WhiteoutMode::Delete,
        preserve_owner: is_root(),
        ..ApplyOptions::default()
    }
}

fn layer_of(dir: &Path, o: &CreateOptions) -> (Vec<u8>, LayerDigests) {
    let mut out = Vec::new();
    let d = write_dir_as_layer(dir, o, &mut out).unwrap();
    (out, d)
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let p = cstr(p);
    let n = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a value slice.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn get_xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let cp = cstr(p);
    let mut names = vec![0u8; 4096];
    // SAFETY: buffer valid for its length.
    let n = unsafe { libc::llistxattr(cp.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let mut out = BTreeMap::new();
    if n <= 0 {
        return out;
    }
    names.truncate(n as usize);
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let s = String::from_utf8_lossy(name).into_owned();
        let cn = CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        // SAFETY: as above.
        let k =
            unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        if k >= 0 {
            v.truncate(k as usize);
            out.insert(s, v);
        }
    }
    out
}

fn user_xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join(".xattr-probe");
    fs::write(&probe, "").unwrap();
    let ok = set_xattr(&probe, "user.probe", b"1").is_ok();
    fs::remove_file(&probe).unwrap();
    ok
}

fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    let t = nix::sys::time::TimeSpec::new(secs, nsec);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// Everything a layer should carry about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    size: Option<u64>,
    content: Option<Digest>,
    link: Option<Vec<u8>>,
    rdev: Option<u64>,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// For files with several links: the first path of the group and the count.
    hardlink: Option<(PathBuf, u64)>,
}

fn kind_of(m: &fs::Metadata) -> char {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        'd'
    } else if t.is_symlink() {
        'l'
    } else if t.is_file() {
        '-'
    } else if t.is_char_device() {
        'c'
    } else if t.is_block_device() {
        'b'
    } else if t.is_fifo() {
        'p'
    } else {
        's'
    }
}

/// The tree below `root` (root itself excluded), sockets left out since layers skip them.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut groups: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    let mut all = Vec::new();
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let r = rel.join(&name);
            let m = fs::symlink_metadata(root.join(&r)).unwrap();
            if m.is_dir() {
                stack.push(r.clone());
            }
            all.push((r, m));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (rel, m) in all {
        let kind = kind_of(&m);
        if kind == 's' {
            continue;
        }
        let p = root.join(&rel);
        let hardlink = if kind != 'd' && m.nlink() > 1 {
            let first = groups
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| rel.clone());
            Some((first.clone(), m.nlink()))
        } else {
            None
        };
        let xattrs = get_xattrs(&p)
            .into_iter()
            .filter(|(k, _)| {
                k.starts_with("user.") || k == "security.capability" || k == "trusted.berth-test"
            })
            .collect();
        out.insert(
            rel,
            Node {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: m.mtime(),
                size: (kind == '-').then_some(m.size()),
                content: (kind == '-').then(|| Digest::sha256_of(&fs::read(&p).unwrap())),
                link: (kind == 'l')
                    .then(|| fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()),
                rdev: matches!(kind, 'c' | 'b').then_some(m.rdev()),
                xattrs,
                hardlink,
            },
        );
    }
    out
}

fn assert_same_tree(expected: &Path, actual: &Path) {
    let a = snapshot(expected);
    let b = snapshot(actual);
    let ka: BTreeSet<_> = a.keys().collect();
    let kb: BTreeSet<_> = b.keys().collect();
    assert_eq!(ka, kb, "entries differ between {expected:?} and {actual:?}");
    for (k, na) in &a {
        assert_eq!(Some(na), b.get(k), "entry {k:?} differs");
    }
}

/// Names of the entries of an uncompressed tar, as the `tar` crate reads them.
fn tar_names(tar_bytes: &[u8]) -> Vec<String> {
    let mut ar = tar::Archive::new(tar_bytes);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            String::from_utf8_lossy(&e.path_bytes()).into_owned()
        })
        .collect()
}

fn gunzip(blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(blob)
        .read_to_end(&mut out)
        .unwrap();
    out
}

const LONG_DIR: &str = "this-is-a-rather-long-directory-name-that-goes-on-and-on-to-pass-the-limit-of-one-hundred-bytes-in-ustar";

/// A tree with every kind of entry a layer can hold. Root-only parts
/// (devices, foreign owners, security.capability) when running as root.
fn rich_tree(root: &Path) {
    let p = |s: &str| root.join(s);
    fs::create_dir_all(p("a/b")).unwrap();
    fs::create_dir(p("empty")).unwrap();
    fs::create_dir(p("sticky")).unwrap();
    fs::set_permissions(p("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir(p("setgid-dir")).unwrap();
    fs::set_permissions(p("setgid-dir"), fs::Permissions::from_mode(0o2775)).unwrap();
    fs::create_dir(p("readonly-dir")).unwrap();
    fs::write(p("readonly-dir/inside"), "x").unwrap();

    fs::write(p("a/file.txt"), "hello layer\n").unwrap();
    fs::write(p("a/b/exec"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(p("a/b/exec"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(p("suid"), "suid").unwrap();
    fs::set_permissions(p("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(p("sgid"), "sgid").unwrap();
    fs::set_permissions(p("sgid"), fs::Permissions::from_mode(0o2711)).unwrap();
    fs::write(p("readonly"), "ro").unwrap();
    fs::set_permissions(p("readonly"), fs::Permissions::from_mode(0o444)).unwrap();
    fs::write(p("empty-file"), "").unwrap();
    // Several deflate blocks, some of it incompressible.
    let mut big = Vec::with_capacity(3 << 20);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while big.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (x >> 60) < 6 {
            big.extend_from_slice(&x.to_le_bytes());
        } else {
            big.extend_from_slice(b"compressible text compressible text ");
        }
    }
    fs::write(p("a/big.bin"), &big).unwrap();

    // Hardlinks: a pair and a triple, across directories.
    fs::write(p("hl1"), "linked").unwrap();
    fs::hard_link(p("hl1"), p("a/hl2")).unwrap();
    fs::write(p("a/b/t1"), "three").unwrap();
    fs::hard_link(p("a/b/t1"), p("t2")).unwrap();
    fs::hard_link(p("a/b/t1"), p("empty-file-link-target-3")).unwrap();

    symlink("a/file.txt", p("link-rel")).unwrap();
    symlink("/etc/passwd", p("link-abs")).unwrap();
    symlink("nowhere/at/all", p("dangling")).unwrap();
    let long_target = format!("../{}/{}", "t".repeat(150), "u".repeat(150));
    symlink(&long_target, p("link-long")).unwrap();

    nix::unistd::mkfifo(&p("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(p("socket")).unwrap();

    // Names past 100 bytes (PAX path) and past 255 bytes in total.
    let d1 = p(LONG_DIR);
    fs::create_dir(&d1).unwrap();
    let d2 = d1.join("y".repeat(200));
    fs::create_dir(&d2).unwrap();
    fs::write(d2.join("z".repeat(180)), "deep").unwrap();
    fs::write(d1.join("f".repeat(120)), "long name").unwrap();
    // Not ASCII, and not UTF-8.
    fs::write(p("ünïcödé.txt"), "utf8").unwrap();
    fs::write(root.join(OsStr::from_bytes(b"bad-\xff-name")), "bytes").unwrap();

    if user_xattrs_supported(root) {
        set_xattr(&p("a/file.txt"), "user.comment", b"a comment").unwrap();
        set_xattr(&p("a/b"), "user.dir", b"\x00binary\xff").unwrap();
    }

    if is_root() {
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        mknod(
            &p("null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(1, 3),
        )
        .unwrap();
        mknod(
            &p("loop9"),
            SFlag::S_IFBLK,
            Mode::from_bits_truncate(0o660),
            makedev(7, 9),
        )
        .unwrap();
        let own = |s: &str, u: u32, g: u32| {
            nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                &p(s),
                Some(nix::unistd::Uid::from_raw(u)),
                Some(nix::unistd::Gid::from_raw(g)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .unwrap()
        };
        own("a/file.txt", 1000, 1000);
        own("a/b", 65534, 65534);
        own("link-rel", 1000, 100);
        own("fifo", 3_000_000, 3_000_001); // needs PAX uid/gid
        // chown clears setuid: set the mode again afterwards.
        own("suid", 1000, 0);
        fs::set_permissions(p("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        // cap_net_bind_service+ep, VFS_CAP_REVISION_2.
        let cap: [u8; 20] = [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        set_xattr(&p("a/b/exec"), "security.capability", &cap).unwrap();
        // xattrs on entries that cannot be opened: written and applied by name.
        set_xattr(&p("fifo"), "trusted.berth-test", b"fifo").unwrap();
        set_xattr(&p("link-rel"), "trusted.berth-test", b"symlink").unwrap();
        set_xattr(&p("null"), "trusted.berth-test", b"device").unwrap();
    }
    fs::set_permissions(p("readonly-dir"), fs::Permissions::from_mode(0o555)).unwrap();

    // Times last (directories' change when entries are added).
    let all = snapshot(root);
    for (i, rel) in all.keys().rev().enumerate() {
        set_mtime(
            &root.join(rel),
            1_500_000_000 + i as i64 * 1000,
            123_456_789,
        );
    }
}

// ---------------------------------------------------------------------------
// round trips

#[test]
fn every_file_type_survives_a_round_trip() {
    let t = TempDir::new().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    rich_tree(&src);

    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let (blob, d) = layer_of(&src, &opts(c));
        assert_eq!(d.size, blob.len() as u64);
        assert_eq!(d.digest, Digest::sha256_of(&blob));
        let dst = t.path().join(format!("dst-{c}"));
        fs::create_dir(&dst).unwrap();
        let stats = apply_layer(&blob[..], &dst, &delete_mode()).unwrap();
        assert_eq!(stats.diff_id, d.diff_id, "{c}");
        assert_eq!(stats.uncompressed_size, d.uncompressed_size);
        assert_eq!(stats.compression, c);
        if c == Compression::None {
            assert_eq!(d.diff_id, d.digest);
        }
        if is_root() {
            assert_same_tree(&src, &dst);
        } else {
            // Without root, owners are ours: compare everything else.
            let a: BTreeMap<_, _> = snapshot(&src)
                .into_iter()
                .map(|(k, mut n)| {
                    n.uid = 0;
                    n.gid = 0;
                    (k, n)
                })
                .collect();
            let b: BTreeMap<_, _> = snapshot(&dst)
                .into_iter()
                .map(|(k, mut n)| {
                    n.uid = 0;
                    n.gid = 0;
                    (k, n)
                })
                .collect();
            assert_eq!(a, b);
        }
    }
}

#[test]
fn diff_id_does_not_depend_on_compression_and_output_is_deterministic() {
    let t = TempDir::new().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    rich_tree(&src);

    let mut diff_ids = BTreeSet::new();
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let runs: Vec<(Vec<u8>, LayerDigests)> = [1usize, 4, 1, 0]
            .into_iter()
            .map(|threads| {
                layer_of(
                    &src,
                    &CreateOptions {
                        compression: c,
                        threads,
                        ..CreateOptions::default()
                    },
                )
            })
            .collect();
        for r in &runs[1..] {
            assert!(
                r.0 == runs[0].0,
                "{c}: output differs between runs or thread counts"
            );
            assert_eq!(r.1, runs[0].1);
        }
        diff_ids.insert(runs[0].1.diff_id.clone());
    }
    assert_eq!(
        diff_ids.len(),
        1,
        "the diffID is the tar's digest, whatever the compression"
    );
}

#[test]
fn tar_is_in_go_pax_format_sorted_and_clamped() {
    let t = TempDir::new().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    rich_tree(&src);
    let clamp = 1_500_004_000;
    let (tar_bytes, _) = layer_of(
        &src,
        &CreateOptions {
            compression: Compression::None,
            mtime_clamp: Some(clamp),
            ..CreateOptions::default()
        },
    );
    // Two zero blocks at the end and nothing after them.
    assert_eq!(tar_bytes.len() % 512, 0);
    assert!(tar_bytes[tar_bytes.len() - 1024..].iter().all(|&b| b == 0));

    let names = tar_names(&tar_bytes);
    assert!(!names.iter().any(|n| n == "socket"), "sockets are skipped");
    assert!(names.contains(&"a/".to_string()));
    assert!(names.contains(&"a/b/".to_string()));
    assert!(names.contains(&"bad-\u{fffd}-name".to_string()));
    let deep = format!("{LONG_DIR}/{}/{}", "y".repeat(200), "z".repeat(180));
    assert!(deep.len() > 255);
    assert!(names.contains(&deep));
    // Sorted bytewise within each directory, parents before children.
    let top: Vec<&String> = names
        .iter()
        .filter(|n| !n.trim_end_matches('/').contains('/'))
        .collect();
    let mut sorted = top.clone();
    sorted.sort_by(|a, b| {
        a.trim_end_matches('/')
            .as_bytes()
            .cmp(b.trim_end_matches('/').as_bytes())
    });
    assert_eq!(top, sorted);
    assert!(
        names.iter().position(|n| n == "a/").unwrap()
            < names.iter().position(|n| n == "a/b/exec").unwrap()
    );

    let mut ar = tar::Archive::new(&tar_bytes[..]);
    let mut hardlinks = 0;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header();
        assert!(h.as_ustar().is_some(), "ustar magic");
        assert!(h.mtime().unwrap() as i64 <= clamp);
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.groupname_bytes(), Some(&b""[..]));
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        if h.entry_type() == tar::EntryType::Link {
            hardlinks += 1;
            let target = e.link_name_bytes().unwrap().into_owned();
            assert!(names.contains(&String::from_utf8_lossy(&target).into_owned()));
        }
        if path == "link-long" {
            assert_eq!(e.link_name_bytes().unwrap().len(), 3 + 150 + 1 + 150);
        }
        if path == "suid" {
            assert_eq!(h.mode().unwrap(), 0o4755);
        }
        if path == "a/file.txt" && user_xattrs_supported(&src) {
            let pax: Vec<(String, Vec<u8>)> = e
                .pax_extensions()
                .unwrap()
                .unwrap()
                .map(|x| {
                    let x = x.unwrap();
                    (x.key().unwrap().to_string(), x.value_bytes().to_vec())
                })
                .collect();
            assert!(pax.contains(&(
                "SCHILY.xattr.user.comment".to_string(),
                b"a comment".to_vec()
            )));
        }
    }
    // hl1/a/hl2 and the three links of t1.
    assert_eq!(hardlinks, 3);
}

#[test]
fn system_gzip_zstd_and_tar_read_the_layers() {
    let t = TempDir::new().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    rich_tree(&src);

    let (gz, d) = layer_of(&src, &opts(Compression::Gzip));
    let gz_path = t.path().join("layer.tar.gz");
    fs::write(&gz_path, &gz).unwrap();
    let st = Command::new("gzip")
        .arg("-t")
        .arg(&gz_path)
        .status()
        .unwrap();
    assert!(st.success(), "gzip -t");
    let zcat = Command::new("zcat").arg(&gz_path).output().unwrap();
    assert!(zcat.status.success());
    assert_eq!(Digest::sha256_of(&zcat.stdout), d.diff_id);
    assert_eq!(zcat.stdout, gunzip(&gz));

    let (zst, dz) = layer_of(&src, &opts(Compression::Zstd));
    let zst_path = t.path().join("layer.tar.zst");
    fs::write(&zst_path, &zst).unwrap();
    let unz = Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .arg(&zst_path)
        .output()
        .unwrap();
    assert!(unz.status.success(), "zstd -d");
    assert_eq!(Digest::sha256_of(&unz.stdout), dz.diff_id);

    let tar_path = t.path().join("layer.tar");
    fs::write(&tar_path, &zcat.stdout).unwrap();
    let list = Command::new("tar")
        .arg("-tvf")
        .arg(&tar_path)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "tar -tvf: {}",
        String::from_utf8_lossy(&list.stderr)
    );
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("a/b/exec"));
    assert!(text.contains(&"z".repeat(180)));
    assert!(text.contains("hl1 link to a/hl2"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("prw-r-----")),
        "fifo listed: {text}"
    );

    // GNU tar extracts it to the same tree.
    let gnu = t.path().join("gnu");
    fs::create_dir(&gnu).unwrap();
    let st = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--same-owner", "-xpf"])
        .arg(&tar_path)
        .arg("-C")
        .arg(&gnu)
        .status()
        .unwrap();
    assert!(st.success());
    if is_root() {
        assert_same_tree(&src, &gnu);
    }

    // And a tar GNU tar writes (with its own conventions: ./ prefix,
    // directories without trailing slash in some cases) applies with berth.
    let gnu_tar = t.path().join("gnu.tar.gz");
    let st = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-czf"])
        .arg(&gnu_tar)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let back = t.path().join("back");
    fs::create_dir(&back).unwrap();
    let f = fs::File::open(&gnu_tar).unwrap();
    apply_layer(f, &back, &delete_mode()).unwrap();
    if is_root() {
        assert_same_tree(&src, &back);
    }
}

#[test]
fn empty_tree_and_empty_files() {
    let t = TempDir::new().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let (blob, d) = layer_of(&src, &opts(c));
        assert_eq!(d.uncompressed_size, 1024);
        let dst = t.path().join(format!("d-{c}"));
        fs::create_dir(&dst).unwrap();
        let s = apply_layer(&blob[..], &dst, &delete_mode()).unwrap();
        assert_eq!(s.diff_id, d.diff_id);
        assert!(fs::read_dir(&dst).unwrap().next().is_none());
    }
}

// ---------------------------------------------------------------------------
// whiteouts

/// A hand-made tar: (name, type, content or link target).
fn tar_of(entries: &[(&str, char, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match kind {
            'd' => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, name, &[][..]).unwrap();
            }
            'l' => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, name, data).unwrap();
            }
            _ => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, data.as_bytes()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn base_layer() -> Vec<u8> {
    tar_of(&[
        ("etc/", 'd', ""),
        ("etc/passwd", 'f', "root"),
        ("etc/gone", 'f', "x"),
        ("opt/", 'd', ""),
        ("opt/app/", 'd', ""),
        ("opt/app/old1", 'f', "1"),
        ("opt/app/sub/", 'd', ""),
        ("opt/app/sub/old2", 'f', "2"),
        ("var/", 'd', ""),
        ("var/cache/", 'd', ""),
        ("var/cache/a", 'f', "a"),
        ("keep/", 'd', ""),
        ("keep/k", 'f', "k"),
    ])
}

fn whiteout_layer() -> Vec<u8> {
    tar_of(&[
        ("etc/", 'd', ""),
        ("etc/.wh.gone", 'f', ""),
        // Opaque: lower children go, this layer's children stay, whatever
        // the order of marker and entries.
        ("opt/app/", 'd', ""),
        ("opt/app/new", 'f', "n"),
        ("opt/app/.wh..wh..opq", 'f', ""),
        ("opt/app/sub/", 'd', ""),
        ("opt/app/sub/fresh", 'f', "f"),
        // A deleted directory: one whiteout.
        ("var/.wh.cache", 'f', ""),
        // A whiteout of something this same layer adds: the entry stays.
        ("keep/mine", 'f', "m"),
        ("keep/.wh.mine", 'f', ""),
        // A whiteout of nothing.
        ("nothing/.wh.here", 'f', ""),
        // aufs bookkeeping is ignored.
        (".wh..wh.plnk/", 'd', ""),
    ])
}

#[test]
fn delete_mode_carries_out_whiteouts() {
    let t = TempDir::new().unwrap();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    apply_layer(&base_layer()[..], &root, &delete_mode()).unwrap();
    apply_layer(&whiteout_layer()[..], &root, &delete_mode()).unwrap();

    let names: BTreeSet<String> = snapshot(&root)
        .keys()
        .map(|k| k.to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = [
        "etc",
        "etc/passwd",
        "opt",
        "opt/app",
        "opt/app/new",
        "opt/app/sub",
        "opt/app/sub/fresh",
        "var",
        "keep",
        "keep/k",
        "keep/mine",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, expected);
}

#[test]
fn overlay_mode_makes_overlay_whiteouts_and_upper_dirs_convert_back() {
    if !require_root("overlay_mode_makes_overlay_whiteouts_and_upper_dirs_convert_back") {
        return;
    }
    let t = TempDir::new().unwrap();
    let snap = t.path().join("snap");
    fs::create_dir(&snap).unwrap();
    let overlay = ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        preserve_owner: true,
        ..ApplyOptions::default()
    };
    apply_layer(&whiteout_layer()[..], &snap, &overlay).unwrap();

    let m = fs::symlink_metadata(snap.join("etc/gone")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), 0);
    assert_eq!(
        get_xattrs(&snap.join("opt/app"))
            .get("trusted.overlay.opaque")
            .map(Vec::as_slice),
        Some(&b"y"[..])
    );
    assert!(
        fs::symlink_metadata(snap.join("var/cache"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    // This layer's own entry wins over its whiteout.
    assert!(snap.join("keep/mine").is_file());
    // No whiteout file is ever created as such.
    assert!(!snap.join("etc/.wh.gone").exists());

    // And back: the snapshot dir is an overlay upper dir.
    let mut out = Vec::new();
    write_upper_as_layer(&snap, &opts(Compression::None), &mut out).unwrap();
    let names = tar_names(&out);
    for n in [
        "etc/.wh.gone",
        "opt/app/",
        "opt/app/.wh..wh..opq",
        "var/.wh.cache",
        "keep/mine",
    ] {
        assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
    }
    // The opaque marker directly follows its directory, and no overlay xattr leaks.
    let i = names.iter().position(|n| n == "opt/app/").unwrap();
    assert_eq!(names[i + 1], "opt/app/.wh..wh..opq");
    let mut ar = tar::Archive::new(&out[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for x in pax {
                assert!(!x.unwrap().key().unwrap().contains("overlay"));
            }
        }
    }
}

#[test]
fn upper_dir_of_a_real_overlay_mount_is_the_change_set() {
    if !require_root("upper_dir_of_a_real_overlay_mount_is_the_change_set") {
        return;
    }
    use nix::mount::{MsFlags, mount, umount};
    let t = TempDir::new().unwrap();
    let p = |s: &str| t.path().join(s);
    for d in ["lower", "upper", "work", "merged"] {
        fs::create_dir(p(d)).unwrap();
    }
    let lower = p("lower");
    fs::create_dir_all(lower.join("d/gone/deep")).unwrap();
    fs::write(lower.join("d/gone/deep/f"), "x").unwrap();
    fs::write(lower.join("d/keep"), "k").unwrap();
    fs::create_dir_all(lower.join("op")).unwrap();
    fs::write(lower.join("op/old1"), "1").unwrap();
    fs::write(lower.join("op/old2"), "2").unwrap();
    fs::write(lower.join("f"), "file").unwrap();
    fs::write(lower.join("chmod-me"), "c").unwrap();

    let data = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
        lower.display(),
        p("upper").display(),
        p("work").display()
    );
    if let Err(e) = mount(
        Some("overlay"),
        &p("merged"),
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    ) {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("overlay mount failed on CI: {e}");
        }
        eprintln!("skipping: overlay mount failed: {e}");
        return;
    }
    let m = p("merged");
    let changes = || -> std::io::Result<()> {
        fs::remove_file(m.join("f"))?;
        fs::remove_dir_all(m.join("d/gone"))?;
        fs::remove_dir_all(m.join("op"))?;
        fs::create_dir(m.join("op"))?;
        fs::write(m.join("op/new"), "n")?;
        fs::set_permissions(m.join("chmod-me"), fs::Permissions::from_mode(0o600))?;
        fs::write(m.join("added"), "a")?;
        Ok(())
    };
    let result = changes();
    let expected = t.path().join("expected");
    let cp = Command::new("cp").arg("-a").arg(&m).arg(&expected).status();
    umount(&m).unwrap();
    result.unwrap();
    assert!(cp.unwrap().success());

    let mut layer = Vec::new();
    write_upper_as_layer(&p("upper"), &opts(Compression::Gzip), &mut layer).unwrap();
    let names = tar_names(&gunzip(&layer));
    for n in [
        ".wh.f",
        "d/.wh.gone",
        "op/",
        "op/.wh..wh..opq",
        "op/new",
        "chmod-me",
        "added",
    ] {
        assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
    }

    // Plain directory: base + change set, deletions carried out.
    let (base, _) = layer_of(&lower, &opts(Compression::Gzip));
    let flat = p("flat");
    fs::create_dir(&flat).unwrap();
    apply_layer(&base[..], &flat, &delete_mode()).unwrap();
    apply_layer(&layer[..], &flat, &delete_mode()).unwrap();
    assert_same_tree(&expected, &flat);

    // Snapshots: each layer in its own dir, stacked as overlay lowerdirs.
    let (s1, s2, view) = (p("s1"), p("s2"), p("view"));
    for d in [&s1, &s2, &view] {
        fs::create_dir(d).unwrap();
    }
    let ov = ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        preserve_owner: true,
        ..ApplyOptions::default()
    };
    apply_layer(&base[..], &s1, &ov).unwrap();
    apply_layer(&layer[..], &s2, &ov).unwrap();
    let data = format!("lowerdir={}:{}", s2.display(), s1.display());
    mount(
        Some("overlay"),
        &view,
        Some("overlay"),
        MsFlags::MS_RDONLY,
        Some(data.as_str()),
    )
    .unwrap();
    let seen = t.path().join("seen");
    let cp = Command::new("cp").arg("-a").arg(&view).arg(&seen).status();
    umount(&view).unwrap();
    assert!(cp.unwrap().success());
    assert_same_tree(&expected, &seen);
}

#[test]
fn userxattr_overlay_uppers_convert_and_unsupported_ones_are_refused() {
    // Rootless overlay (mounted with userxattr) marks opaque dirs with
    // user.overlay.opaque; redirect_dir and metacopy leave uppers that do not
    // describe the change on their own.
    let t = TempDir::new().unwrap();
    if !user_xattrs_supported(t.path()) {
        eprintln!("skipping: no user xattrs on {}", t.path().display());
        return;
    }
    let upper = t.path().join("upper");
    fs::create_dir_all(upper.join("op")).unwrap();
    fs::write(upper.join("op/new"), "n").unwrap();
    set_xattr(&upper.join("op"), "user.overlay.opaque", b"y").unwrap();
    set_xattr(&upper.join("op"), "user.keep", b"1").unwrap();
    fs::write(upper.join("gone"), "").unwrap();
    set_xattr(&upper.join("gone"), "user.overlay.whiteout", b"").unwrap();
    let mut out = Vec::new();
    write_upper_as_layer(&upper, &opts(Compression::None), &mut out).unwrap();
    assert_eq!(
        tar_names(&out),
        vec![".wh.gone", "op/", "op/.wh..wh..opq", "op/new"]
    );
    let mut ar = tar::Archive::new(&out[..]);
    let mut e = ar.entries().unwrap().nth(1).unwrap().unwrap();
    let keys: Vec<String> = e
        .pax_extensions()
        .unwrap()
        .unwrap()
        .map(|x| x.unwrap().key().unwrap().to_string())
        .collect();
    assert_eq!(keys, vec!["SCHILY.xattr.user.keep"]);

    for (xattr, word) in [
        ("user.overlay.redirect", "redirect_dir"),
        ("user.overlay.metacopy", "metacopy"),
    ] {
        let bad = t.path().join(format!("bad-{word}"));
        fs::create_dir_all(bad.join("d")).unwrap();
        set_xattr(&bad.join("d"), xattr, b"/elsewhere").unwrap();
        let err = write_upper_as_layer(&bad, &opts(Compression::None), Vec::new()).unwrap_err();
        assert!(err.to_string().contains(word), "{err}");
        assert!(err.to_string().contains("/d"), "{err}");
    }
}

// ---------------------------------------------------------------------------
// the naive differ

#[test]
fn naive_diff_finds_adds_changes_and_deletes() {
    let t = TempDir::new().unwrap();
    let lower = t.path().join("lower");
    fs::create_dir(&lower).unwrap();
    let p = |s: &str| lower.join(s);
    fs::create_dir_all(p("etc")).unwrap();
    fs::write(p("etc/unchanged"), "same").unwrap();
    fs::write(p("etc/changed"), "old").unwrap();
    fs::write(p("etc/chmod"), "m").unwrap();
    fs::write(p("etc/deleted"), "x").unwrap();
    fs::create_dir_all(p("tree/sub/deeper")).unwrap();
    fs::write(p("tree/sub/deeper/f"), "x").unwrap();
    fs::write(p("tree/g"), "x").unwrap();
    fs::create_dir_all(p("dir2file")).unwrap();
    fs::write(p("dir2file/child"), "x").unwrap();
    fs::write(p("file2dir"), "x").unwrap();
    fs::create_dir_all(p("opaque")).unwrap();
    for n in ["a", "b", "c"] {
        fs::write(p(&format!("opaque/{n}")), n).unwrap();
    }
    fs::create_dir_all(p("quiet/inner")).unwrap();
    fs::write(p("quiet/inner/touched"), "t").unwrap();
    symlink("etc/unchanged", p("relink")).unwrap();
    for (i, rel) in snapshot(&lower).keys().rev().enumerate() {
        set_mtime(&lower.join(rel), 1_400_000_000 + i as i64, 0);
    }

    let new = t.path().join("new");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&lower)
            .arg(&new)
            .status()
            .unwrap()
            .success()
    );
    let q = |s: &str| new.join(s);
    fs::write(q("etc/changed"), "new content").unwrap();
    fs::set_permissions(q("etc/chmod"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(q("etc/deleted")).unwrap();
    fs::remove_dir_all(q("tree")).unwrap();
    fs::remove_dir_all(q("dir2file")).unwrap();
    fs::write(q("dir2file"), "now a file").unwrap();
    fs::remove_file(q("file2dir")).unwrap();
    fs::create_dir_all(q("file2dir/x")).unwrap();
    fs::write(q("file2dir/x/y"), "y").unwrap();
    for n in ["a", "b", "c"] {
        fs::remove_file(q(&format!("opaque/{n}"))).unwrap();
    }
    fs::write(q("opaque/fresh"), "f").unwrap();
    fs::write(q("added"), "a").unwrap();
    fs::remove_file(q("relink")).unwrap();
    symlink("etc/changed", q("relink")).unwrap();
    // Content change deep down, directory times restored: the parents are
    // still written (so their metadata survives a re-created parent).
    let inner_times = fs::metadata(q("quiet/inner")).unwrap();
    let outer_times = fs::metadata(q("quiet")).unwrap();
    fs::write(q("quiet/inner/touched"), "changed!").unwrap();
    set_mtime(
        &q("quiet/inner"),
        inner_times.mtime(),
        inner_times.mtime_nsec(),
    );
    set_mtime(&q("quiet"), outer_times.mtime(), outer_times.mtime_nsec());
    if user_xattrs_supported(&new) {
        set_xattr(&q("etc/unchanged"), "user.tag", b"v").unwrap();
    }

    let mut out = Vec::new();
    let d = write_diff_as_layer(&lower, &new, &opts(Compression::None), &mut out).unwrap();
    assert_eq!(d.diff_id, d.digest);
    let names = tar_names(&out);
    let mut expected = vec![
        "added",
        "dir2file",
        "etc/",
        "etc/changed",
        "etc/chmod",
        "etc/.wh.deleted",
        "file2dir/",
        "file2dir/x/",
        "file2dir/x/y",
        "opaque/",
        "opaque/.wh..wh..opq",
        "opaque/fresh",
        "quiet/",
        "quiet/inner/",
        "quiet/inner/touched",
        "relink",
        ".wh.tree",
    ];
    if user_xattrs_supported(&new) {
        expected.push("etc/unchanged");
    }
    let got: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = expected.into_iter().collect();
    assert_eq!(got, want);
    // A deleted directory is one whiteout, its children are not listed.
    assert!(!names.iter().any(|n| n.starts_with("tree/")));

    // lower + diff == new.
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    let (base, _) = layer_of(&lower, &opts(Compression::Gzip));
    apply_layer(&base[..], &root, &delete_mode()).unwrap();
    apply_layer(&out[..], &root, &delete_mode()).unwrap();
    assert_same_tree(&new, &root);

    // No change, no entries.
    let mut empty = Vec::new();
    write_diff_as_layer(&new, &new, &opts(Compression::None), &mut empty).unwrap();
    assert_eq!(tar_names(&empty), Vec::<String>::new());
}

#[test]
fn reserved_whiteout_names_in_sources_are_refused() {
    let t = TempDir::new().unwrap();
    fs::write(t.path().join(".wh.sneaky"), "").unwrap();
    let err = write_dir_as_layer(t.path(), &opts(Compression::None), Vec::new()).unwrap_err();
    assert!(err.to_string().contains(".wh.sneaky"), "{err}");
}

#[test]
fn big_layer_streams_through_the_pipeline() {
    // More chunks than the channel holds, files spanning chunk borders.
    let t = TempDir::new().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut x: u32 = 1;
    for i in 0..40 {
        let n = 100_000 + i * 37_123;
        let mut data = Vec::with_capacity(n);
        while data.len() < n {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            data.extend_from_slice(&x.to_be_bytes()[..(x % 4) as usize]);
            data.extend_from_slice(b"abcabc");
        }
        fs::write(src.join(format!("f{i:02}")), &data).unwrap();
    }
    let (blob, d) = layer_of(&src, &opts(Compression::Gzip));
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    // Feed it in small reads to exercise short reads.
    struct Dribble<'a>(&'a [u8]);
    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(1000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let s = apply_layer(Dribble(&blob), &dst, &delete_mode()).unwrap();
    assert_eq!(s.diff_id, d.diff_id);
    for i in 0..40 {
        let a = fs::read(src.join(format!("f{i:02}"))).unwrap();
        let b = fs::read(dst.join(format!("f{i:02}"))).unwrap();
        assert!(a == b, "f{i:02}");
    }
    let _ = std::io::stderr().flush();
}
