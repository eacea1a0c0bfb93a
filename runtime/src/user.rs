//! Resolving `-u user[:group]` against the container's /etc/passwd and
//! /etc/group, the way runc's `GetExecUser` does for Docker: names or numbers,
//! a number need not exist in the files, supplementary groups come from
//! /etc/group unless a group was given, and HOME from the passwd entry.

use std::fs;
use std::io;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, in the order found, without duplicates.
    pub groups: Vec<u32>,
    pub home: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("invalid user spec {0:?}")]
    Invalid(String),
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Parses passwd(5) text; malformed lines are skipped, as libc does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// Parses group(5) text; malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `spec` (`""`, `user`, `uid`, `user:group`, `uid:gid`, ...) plus
/// `additional` groups (names or numbers) against parsed files.
pub fn resolve(
    spec: &str,
    additional: &[String],
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if group_part.is_some_and(str::is_empty) && !user_part.is_empty() {
        return Err(UserError::Invalid(spec.to_string()));
    }
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd
            .iter()
            .find(|p| p.uid == uid)
            .cloned()
            .or(Some(PasswdEntry {
                name: String::new(),
                uid,
                gid: 0,
                home: String::new(),
            })),
        Err(_) => passwd.iter().find(|p| p.name == user_part).cloned(),
    }
    .ok_or_else(|| UserError::NoUser(user_part.to_string()))?;

    let mut out = ExecUser {
        uid: entry.uid,
        gid: entry.gid,
        groups: Vec::new(),
        home: if entry.home.is_empty() {
            "/".to_string()
        } else {
            entry.home.clone()
        },
    };

    match group_part {
        Some(g) => out.gid = lookup_group(g, groups)?,
        None if !entry.name.is_empty() => {
            for g in groups {
                if g.members.contains(&entry.name) && !out.groups.contains(&g.gid) {
                    out.groups.push(g.gid);
                }
            }
        }
        None => {}
    }
    for g in additional {
        let gid = lookup_group(g, groups)?;
        if !out.groups.contains(&gid) {
            out.groups.push(gid);
        }
    }
    Ok(out)
}

fn lookup_group(name: &str, groups: &[GroupEntry]) -> Result<u32, UserError> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    groups
        .iter()
        .find(|g| g.name == name)
        .map(|g| g.gid)
        .ok_or_else(|| UserError::NoGroup(name.to_string()))
}

/// Reads /etc/passwd and /etc/group under `root` (missing files count as empty)
/// and resolves `spec`.
pub fn resolve_in(root: &Path, spec: &str, additional: &[String]) -> Result<ExecUser, UserError> {
    let read = |rel: &str| -> Result<String, UserError> {
        let p = root.join(rel);
        match fs::read(&p) {
            Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(source) => Err(UserError::Read {
                path: p.display().to_string(),
                source,
            }),
        }
    };
    let passwd = parse_passwd(&read("etc/passwd")?);
    let groups = parse_group(&read("etc/group")?);
    resolve(spec, additional, &passwd, &groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        app:x:1000:1000:App:/home/app:/bin/sh\n\
        broken line\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\n\
        daemon:x:1:\n\
        wheel:x:10:app,other\n\
        app:x:1000:\n\
        audio:x:29:app\n\
        nogroup:x:65534:\n";

    fn r(spec: &str, add: &[&str]) -> Result<ExecUser, UserError> {
        let add: Vec<String> = add.iter().map(|s| s.to_string()).collect();
        resolve(spec, &add, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    #[test]
    fn empty_is_root() {
        let u = r("", &[]).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn by_name_with_supplementary_groups() {
        let u = r("app", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.groups, vec![10, 29]);
        assert_eq!(u.home, "/home/app");
    }

    #[test]
    fn by_number_known_and_unknown() {
        let u = r("1000", &[]).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/app"));
        let u = r("4242", &[]).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        assert!(u.groups.is_empty());
    }

    #[test]
    fn explicit_group_replaces_supplementary() {
        let u = r("app:daemon", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1));
        assert!(u.groups.is_empty());
        let u = r("65534:4000", &["audio", "77"]).unwrap();
        assert_eq!((u.uid, u.gid), (65534, 4000));
        assert_eq!(u.groups, vec![29, 77]);
    }

    #[test]
    fn unknown_names_are_errors_with_dockers_message() {
        let e = r("ghost", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert!(matches!(r("app:ghosts", &[]), Err(UserError::NoGroup(_))));
        assert!(matches!(r("app", &["ghosts"]), Err(UserError::NoGroup(_))));
    }

    #[test]
    fn files_under_a_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        let u = resolve_in(dir.path(), "daemon", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1, 1));
        // No /etc/group: no supplementary groups, still fine.
        assert!(u.groups.is_empty());
    }
}
