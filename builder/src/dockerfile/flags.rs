//! Typed flags. [`FlagSet`] checks the flags of one instruction against the
//! ones it accepts (BuildKit's `BFlags`: unknown, duplicated, missing or
//! non-boolean values are errors), and the `parse_*` functions turn flag
//! values into the typed structures of the AST.

use std::borrow::Cow;
use std::time::Duration;

use super::ast::{
    CacheSharing, Chmod, Device, Flag, MountType, NetworkMode, RunMount, SecurityMode,
};
use super::error::{ErrorKind, Position};
use super::scan;
use super::words::split_once_byte;
use crate::suggest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    Bool,
    String,
    /// May be given several times (`--mount`, `--exclude`, `--device`).
    Strings,
}

/// The flags of one instruction, checked against what it accepts. Lookups
/// read the flags as given (validation left nothing to store).
pub(crate) struct FlagSet<'f, 'src> {
    flags: &'f [Flag<'src>],
}

/// A flag error before the instruction name and position are attached.
pub(crate) struct FlagError {
    pub position: Position,
    pub kind: ErrorKind,
}

impl<'f, 'src> FlagSet<'f, 'src> {
    pub fn parse(
        instruction: &str,
        flags: &'f [Flag<'src>],
        accepted: &[(&'static str, FlagKind)],
    ) -> Result<Self, FlagError> {
        for (index, flag) in flags.iter().enumerate() {
            let err = |kind| FlagError {
                position: flag.position,
                kind,
            };
            let instruction = || instruction.to_ascii_uppercase();
            let Some(&(name, kind)) = accepted.iter().find(|(n, _)| *n == flag.name) else {
                let suggestion =
                    suggest::closest(&flag.name, accepted.iter().map(|(n, _)| *n), true);
                return Err(err(ErrorKind::UnknownFlag {
                    instruction: instruction(),
                    flag: flag.name.to_string(),
                    suggestion,
                }));
            };
            let given_before = flags[..index].iter().any(|f| f.name == name);
            if given_before && kind != FlagKind::Strings {
                return Err(err(ErrorKind::DuplicateFlag {
                    instruction: instruction(),
                    flag: name.to_string(),
                }));
            }
            let missing = || ErrorKind::MissingFlagValue {
                instruction: instruction(),
                flag: name.to_string(),
            };
            match (kind, flag.value.as_deref()) {
                (FlagKind::Bool, None) => {}
                (FlagKind::Bool, Some("")) => return Err(err(missing())),
                (FlagKind::Bool, Some(v)) => {
                    if bool_value(v).is_none() {
                        return Err(err(ErrorKind::InvalidFlagValue {
                            instruction: instruction(),
                            flag: name.to_string(),
                            value: v.to_string(),
                            reason: "expecting a boolean value".to_string(),
                        }));
                    }
                }
                (FlagKind::String | FlagKind::Strings, None) => return Err(err(missing())),
                (FlagKind::String | FlagKind::Strings, Some(_)) => {}
            }
        }
        Ok(FlagSet { flags })
    }

    fn get(&self, name: &str) -> Option<&'f Flag<'src>> {
        self.flags.iter().find(|f| f.name == name)
    }

    /// A boolean flag: `--name` alone is true.
    pub fn bool(&self, name: &str) -> Option<bool> {
        let flag = self.get(name)?;
        match flag.value.as_deref() {
            None => Some(true),
            Some(v) => bool_value(v),
        }
    }

    /// A flag given once, with its value and position.
    pub fn string(&self, name: &str) -> Option<(Cow<'src, str>, Position)> {
        self.get(name)
            .and_then(|f| Some((f.value.clone()?, f.position)))
    }

    /// Every value of a flag that may be given several times, in order.
    pub fn strings(&self, name: &str) -> impl Iterator<Item = (Cow<'src, str>, Position)> {
        self.flags
            .iter()
            .filter(move |f| f.name == name)
            .filter_map(|f| Some((f.value.clone()?, f.position)))
    }
}

/// A boolean flag's value: `true` or `false` in any case.
fn bool_value(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// A flag value problem: the reason, for [`ErrorKind::InvalidFlagValue`].
pub type ValueError = String;

fn holds_variable(value: &str) -> bool {
    value.contains('$')
}

/// Splits one CSV record the way Go's `encoding/csv` reads `--mount` and
/// `--device` values: commas separate fields, a field may be wrapped in double
/// quotes (with `""` for a quote inside), a bare quote inside an unquoted
/// field is an error. Fields are borrowed from `value` unless they held `""`.
pub(crate) fn split_csv(value: &str) -> Result<Vec<Cow<'_, str>>, ValueError> {
    csv_fields(value).collect()
}

/// The fields of [`split_csv`] one by one; a syntax error is the last item.
fn csv_fields(value: &str) -> impl Iterator<Item = Result<Cow<'_, str>, ValueError>> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let text = rest.take()?;
        let Some(quoted) = text.strip_prefix('"') else {
            return Some(match scan::find_either(text.as_bytes(), b',', b'"') {
                None => Ok(Cow::Borrowed(text)),
                Some(i) if text.as_bytes()[i] == b',' => {
                    rest = Some(&text[i + 1..]);
                    Ok(Cow::Borrowed(&text[..i]))
                }
                Some(_) => Err("bare \" in non-quoted-field".to_string()),
            });
        };
        let (field, after) = match quoted_csv_field(quoted) {
            Ok(read) => read,
            Err(e) => return Some(Err(e)),
        };
        Some(match after.strip_prefix(',') {
            Some(next) => {
                rest = Some(next);
                Ok(field)
            }
            None if after.is_empty() => Ok(field),
            None => Err("extraneous or missing \" in quoted-field".to_string()),
        })
    })
}

/// A quoted CSV field whose opening quote has been read: its value (`""`
/// read as `"`) and the text after its closing quote.
fn quoted_csv_field(text: &str) -> Result<(Cow<'_, str>, &str), ValueError> {
    let mut unescaped: Option<String> = None;
    let mut from = 0;
    loop {
        let Some(quote) = text[from..].find('"').map(|i| from + i) else {
            return Err("extraneous or missing \" in quoted-field".to_string());
        };
        if text[quote + 1..].starts_with('"') {
            unescaped
                .get_or_insert_with(String::new)
                .push_str(&text[from..=quote]);
            from = quote + 2;
            continue;
        }
        let field = match unescaped {
            None => Cow::Borrowed(&text[..quote]),
            Some(mut s) => {
                s.push_str(&text[from..quote]);
                Cow::Owned(s)
            }
        };
        return Ok((field, &text[quote + 1..]));
    }
}

/// `key=value` split at the first `=`; the value keeps the field's borrow.
fn split_field<'f, 'a>(field: &'f Cow<'a, str>) -> (&'f str, Option<Cow<'a, str>>) {
    match field {
        Cow::Borrowed(f) => match split_once_byte(f, b'=') {
            Some((k, v)) => (k, Some(Cow::Borrowed(v))),
            None => (f, None),
        },
        Cow::Owned(f) => match split_once_byte(f, b'=') {
            Some((k, v)) => (k, Some(Cow::Owned(v.to_string()))),
            None => (f, None),
        },
    }
}

/// ASCII lower case, copying only when there is an upper-case letter.
fn lower(text: &str) -> Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ValueError> {
    // Go's strconv.ParseBool.
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value for {key}: {value}")),
    }
}

fn parse_uint(value: &str, radix: u32, what: &str) -> Result<u32, ValueError> {
    u32::from_str_radix(value, radix).map_err(|_| format!("invalid value {value} for {what}"))
}

const MOUNT_KEYS: [&str; 18] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "size",
];

/// Parses one `RUN --mount` value with BuildKit's rules. Values holding a `$`
/// are stored as written and not validated; call again after expansion.
pub fn parse_mount(spec: &str) -> Result<RunMount<'_>, ValueError> {
    let mut m = RunMount {
        mount_type: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: false,
        id: None,
        sharing: None,
        required: false,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        env: None,
        spec: Cow::Borrowed(spec),
    };
    // The type decides what other keys mean, so read it first, wherever it
    // is. This pass also reports a malformed value before anything else.
    for field in csv_fields(spec) {
        let field = field.map_err(|e| format!("failed to parse csv mounts: {e}"))?;
        if let Some((key, value)) = split_once_byte(&field, b'=')
            && key.eq_ignore_ascii_case("type")
            && !holds_variable(value)
        {
            m.mount_type = match lower(value).as_ref() {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "tmpfs" => MountType::Tmpfs,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                _ => {
                    let hint =
                        suggest::closest(value, ["bind", "cache", "tmpfs", "secret", "ssh"], false)
                            .map(|s| format!(" (did you mean {s}?)"))
                            .unwrap_or_default();
                    return Err(format!("unsupported mount type {value:?}{hint}"));
                }
            };
        }
    }
    let mut readonly_auto = true;
    // Every field was read without error above.
    for field in csv_fields(spec).filter_map(Result::ok) {
        let (key, value) = split_field(&field);
        let key = lower(key);
        let Some(value) = value else {
            match key.as_ref() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    readonly_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    readonly_auto = false;
                }
                "required" if matches!(m.mount_type, MountType::Secret | MountType::Ssh) => {
                    m.required = true;
                }
                "required" => {
                    return Err(format!(
                        "unexpected key 'required' for mount type '{}'",
                        m.mount_type.as_str()
                    ));
                }
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        if key == "from" && holds_variable(&value) {
            return Err(
                "'from' doesn't support variable expansion, define alias stage instead".to_string(),
            );
        }
        let literal = !holds_variable(&value);
        match key.as_ref() {
            "type" => {}
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                if literal {
                    m.readonly = parse_bool(&key, &value)?;
                }
                readonly_auto = false;
            }
            "readwrite" | "rw" => {
                if literal {
                    m.readonly = !parse_bool(&key, &value)?;
                }
                readonly_auto = false;
            }
            "required" => {
                if !matches!(m.mount_type, MountType::Secret | MountType::Ssh) {
                    return Err(format!(
                        "unexpected key 'required' for mount type '{}'",
                        m.mount_type.as_str()
                    ));
                }
                if literal {
                    m.required = parse_bool(&key, &value)?;
                }
            }
            "id" => m.id = Some(value),
            "sharing" if literal => {
                m.sharing = Some(match lower(&value).as_ref() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => return Err(format!("unsupported sharing value {value:?}")),
                });
            }
            "mode" if literal => m.mode = Some(parse_uint(&value, 8, "mode")?),
            "uid" if literal => m.uid = Some(parse_uint(&value, 10, "uid")?),
            "gid" if literal => m.gid = Some(parse_uint(&value, 10, "gid")?),
            "sharing" | "mode" | "uid" | "gid" => {}
            "size" => {
                if m.mount_type != MountType::Tmpfs {
                    return Err(format!(
                        "unexpected key 'size' for mount type '{}'",
                        m.mount_type.as_str()
                    ));
                }
                m.size = Some(value);
            }
            "env" => {
                if m.mount_type != MountType::Secret {
                    return Err(format!(
                        "unexpected key 'env' for mount type '{}'",
                        m.mount_type.as_str()
                    ));
                }
                m.env = Some(value);
            }
            _ => {
                let hint = suggest::closest(&key, MOUNT_KEYS, true)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default();
                return Err(format!("unexpected key '{key}' in '{field}'{hint}"));
            }
        }
    }
    let file_info_allowed = matches!(
        m.mount_type,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    for (what, set) in [
        ("mode", m.mode.is_some()),
        ("uid", m.uid.is_some()),
        ("gid", m.gid.is_some()),
    ] {
        if set && !file_info_allowed {
            return Err(format!(
                "{what} not allowed for {:?} type mounts",
                m.mount_type.as_str()
            ));
        }
    }
    if readonly_auto {
        m.readonly = !matches!(m.mount_type, MountType::Cache | MountType::Tmpfs);
    }
    if m.sharing.is_some() && m.mount_type != MountType::Cache {
        return Err(format!(
            "invalid cache sharing set for {} mount",
            m.mount_type.as_str()
        ));
    }
    if m.mount_type == MountType::Secret {
        if m.from.is_some() {
            return Err("secret mount should not have a from".to_string());
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() && m.env.is_none() {
            return Err("invalid secret mount. one of source, target required".to_string());
        }
        if m.source.is_some() && m.id.is_some() {
            return Err("both source and id can't be set".to_string());
        }
    }
    Ok(m)
}

pub fn parse_network(value: &str) -> Result<NetworkMode, ValueError> {
    match value {
        "default" => Ok(NetworkMode::Default),
        "none" => Ok(NetworkMode::None),
        "host" => Ok(NetworkMode::Host),
        _ => Err(format!("unsupported network mode {value:?}")),
    }
}

pub fn parse_security(value: &str) -> Result<SecurityMode, ValueError> {
    match value {
        "insecure" => Ok(SecurityMode::Insecure),
        "sandbox" => Ok(SecurityMode::Sandbox),
        _ => Err(format!("unsupported security mode {value:?}")),
    }
}

/// `--device=name[,required[=bool]]` (CDI device names).
pub fn parse_device(value: &str) -> Result<Device<'_>, ValueError> {
    let fields = split_csv(value).map_err(|e| format!("failed to parse csv device: {e}"))?;
    let mut device = Device {
        name: Cow::Borrowed(""),
        required: false,
    };
    let mut fields = fields.into_iter();
    // The first field is the device name; CDI names may hold `=`
    // (`vendor.com/gpu=all`).
    if let Some(first) = fields.next() {
        device.name = match first {
            Cow::Borrowed(f) => Cow::Borrowed(f.strip_prefix("name=").unwrap_or(f)),
            Cow::Owned(f) => Cow::Owned(f.strip_prefix("name=").unwrap_or(&f).to_string()),
        };
    }
    for field in fields {
        match field.split_once('=') {
            None if field == "required" => device.required = true,
            Some(("required", v)) => device.required = parse_bool("required", v)?,
            _ => return Err(format!("unexpected key '{field}' in '{value}'")),
        }
    }
    if device.name.is_empty() {
        return Err("device name must not be empty".to_string());
    }
    Ok(device)
}

/// `--chmod`: octal up to 07777, or symbolic modes like `u+x,g-w,o=r`.
pub fn parse_chmod(value: &str) -> Result<Chmod<'_>, ValueError> {
    if holds_variable(value) {
        return Ok(Chmod::Unexpanded(Cow::Borrowed(value)));
    }
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return match u32::from_str_radix(value, 8) {
            Ok(mode) if mode <= 0o7777 => Ok(Chmod::Octal(mode)),
            _ => Err(format!(
                "invalid chmod parameter: '{value}'. it should be octal string and between 0 and 07777"
            )),
        };
    }
    let clause_ok = |clause: &str| {
        let rest = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        let mut ops = rest.chars().peekable();
        let mut saw_op = false;
        while let Some(op) = ops.next() {
            if !matches!(op, '+' | '-' | '=') {
                return false;
            }
            saw_op = true;
            while ops
                .peek()
                .is_some_and(|c| matches!(c, 'r' | 'w' | 'x' | 'X' | 's' | 't' | 'u' | 'g' | 'o'))
            {
                ops.next();
            }
        }
        saw_op
    };
    if !value.is_empty() && value.split(',').all(clause_ok) {
        Ok(Chmod::Symbolic(Cow::Borrowed(value)))
    } else {
        Err(format!(
            "invalid chmod parameter: '{value}'. it should be octal string and between 0 and 07777, or a symbolic mode"
        ))
    }
}

/// Go's `time.ParseDuration`: `300ms`, `1.5h`, `2h45m`, `-1s` (negative is
/// rejected by HEALTHCHECK's minimum).
pub fn parse_go_duration(value: &str) -> Result<(bool, Duration), ValueError> {
    let invalid = || format!("time: invalid duration {value:?}");
    let (negative, mut rest) = match value.as_bytes().first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    if rest == "0" {
        return Ok((false, Duration::ZERO));
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let amount: f64 = number.parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("time: missing unit in duration {value:?}")),
            unit => return Err(format!("time: unknown unit {unit:?} in duration {value:?}")),
        };
        rest = &rest[unit_len..];
        total += amount * scale;
    }
    if !total.is_finite() || total > 9.2e9 {
        return Err(invalid());
    }
    Ok((negative && total > 0.0, Duration::from_secs_f64(total)))
}

/// HEALTHCHECK's interval flags: empty or zero means "inherit", anything
/// else must be at least 1ms.
pub fn parse_health_interval(flag: &str, value: &str) -> Result<Option<Duration>, ValueError> {
    if value.is_empty() {
        return Ok(None);
    }
    let (negative, d) = parse_go_duration(value)?;
    if d.is_zero() {
        return Ok(None);
    }
    if negative || d < Duration::from_millis(1) {
        return Err(format!("Interval {flag:?} cannot be less than 1ms"));
    }
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The char-by-char CSV reader `split_csv` replaced, as the reference.
    mod reference {
        pub fn split_csv(value: &str) -> Result<Vec<String>, String> {
            let mut fields = Vec::new();
            let mut chars = value.chars().peekable();
            loop {
                let mut field = String::new();
                if chars.peek() == Some(&'"') {
                    chars.next();
                    loop {
                        match chars.next() {
                            None => {
                                return Err("extraneous or missing \" in quoted-field".to_string());
                            }
                            Some('"') => {
                                if chars.peek() == Some(&'"') {
                                    chars.next();
                                    field.push('"');
                                } else {
                                    break;
                                }
                            }
                            Some(c) => field.push(c),
                        }
                    }
                    match chars.next() {
                        None => {
                            fields.push(field);
                            return Ok(fields);
                        }
                        Some(',') => fields.push(field),
                        Some(_) => {
                            return Err("extraneous or missing \" in quoted-field".to_string());
                        }
                    }
                } else {
                    loop {
                        match chars.next() {
                            None => {
                                fields.push(field);
                                return Ok(fields);
                            }
                            Some(',') => {
                                fields.push(field);
                                break;
                            }
                            Some('"') => return Err("bare \" in non-quoted-field".to_string()),
                            Some(c) => field.push(c),
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

        #[test]
        fn csv_agrees_with_the_reference(
            pieces in proptest::collection::vec(
                proptest::sample::select(&["a", "b=c", ",", "\"", "\"\"", "é", " ", "=", "x,y"][..]),
                0..12,
            )
        ) {
            let value = pieces.concat();
            let got = split_csv(&value).map(|v| v.into_iter().map(|f| f.into_owned()).collect::<Vec<_>>());
            proptest::prop_assert_eq!(got, reference::split_csv(&value));
        }
    }

    #[test]
    fn mounts() {
        let m = parse_mount("type=cache,target=/root/.cache,sharing=locked,id=go").unwrap();
        assert_eq!(m.mount_type, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing, Some(CacheSharing::Locked));
        assert!(!m.readonly);
        let m = parse_mount("target=/src").unwrap();
        assert_eq!(m.mount_type, MountType::Bind);
        assert!(m.readonly);
        let m = parse_mount("type=bind,source=.,target=/src,rw").unwrap();
        assert!(!m.readonly);
        let m = parse_mount("type=secret,id=npmrc,target=/root/.npmrc,required").unwrap();
        assert!(m.required);
        let m = parse_mount("type=secret,id=tok,env=TOKEN").unwrap();
        assert_eq!(m.env.as_deref(), Some("TOKEN"));
        let m = parse_mount("type=ssh").unwrap();
        assert_eq!(m.mount_type, MountType::Ssh);
        let m = parse_mount("type=tmpfs,target=/tmp,size=64m").unwrap();
        assert_eq!(m.size.as_deref(), Some("64m"));
        let m = parse_mount("type=cache,target=/c,mode=0755,uid=1000,gid=1000").unwrap();
        assert_eq!(m.mode, Some(0o755));
        assert_eq!(m.uid, Some(1000));
        let m = parse_mount("type=cache,target=$DIR,uid=$UID").unwrap();
        assert_eq!(m.target.as_deref(), Some("$DIR"));
        assert_eq!(m.uid, None);
        let m = parse_mount("\"type=bind,source=a,b\",target=/x");
        assert!(m.is_err(), "quoted field becomes one field with an odd key");
    }

    #[test]
    fn mount_errors() {
        assert!(
            parse_mount("type=volume")
                .unwrap_err()
                .contains("unsupported mount type")
        );
        assert!(
            parse_mount("type=cahce")
                .unwrap_err()
                .contains("did you mean cache?")
        );
        assert!(parse_mount("target").unwrap_err().contains("key=value"));
        assert!(
            parse_mount("type=bind,required")
                .unwrap_err()
                .contains("required")
        );
        assert!(
            parse_mount("type=bind,mode=0700")
                .unwrap_err()
                .contains("mode not allowed")
        );
        assert!(
            parse_mount("type=bind,sharing=shared")
                .unwrap_err()
                .contains("sharing")
        );
        assert!(
            parse_mount("type=cache,sharing=nope")
                .unwrap_err()
                .contains("sharing")
        );
        assert!(
            parse_mount("type=secret,from=x,id=a")
                .unwrap_err()
                .contains("from")
        );
        assert!(
            parse_mount("type=secret")
                .unwrap_err()
                .contains("one of source, target")
        );
        assert!(
            parse_mount("from=$STAGE,target=/x")
                .unwrap_err()
                .contains("alias stage")
        );
        assert!(
            parse_mount("tagret=/x")
                .unwrap_err()
                .contains("did you mean target?")
        );
        assert!(
            parse_mount("type=cache,mode=9")
                .unwrap_err()
                .contains("mode")
        );
        assert!(parse_mount("a\"b").unwrap_err().contains("bare"));
    }

    #[test]
    fn network_security_device() {
        assert_eq!(parse_network("none").unwrap(), NetworkMode::None);
        assert!(parse_network("bridge").is_err());
        assert_eq!(parse_security("insecure").unwrap(), SecurityMode::Insecure);
        assert!(parse_security("privileged").is_err());
        let d = parse_device("vendor.com/gpu=all,required").unwrap();
        assert_eq!(d.name, "vendor.com/gpu=all");
        assert!(d.required);
        let d = parse_device("nvidia.com/gpu").unwrap();
        assert!(!d.required);
    }

    #[test]
    fn chmod() {
        assert_eq!(parse_chmod("755").unwrap(), Chmod::Octal(0o755));
        assert_eq!(parse_chmod("0644").unwrap(), Chmod::Octal(0o644));
        assert!(parse_chmod("8").is_err());
        assert!(parse_chmod("17777").is_err());
        assert_eq!(
            parse_chmod("u+x,g-w").unwrap(),
            Chmod::Symbolic("u+x,g-w".into())
        );
        assert_eq!(parse_chmod("a=rX").unwrap(), Chmod::Symbolic("a=rX".into()));
        assert!(parse_chmod("u+q").is_err());
        assert!(parse_chmod("rw").is_err());
        assert_eq!(
            parse_chmod("$MODE").unwrap(),
            Chmod::Unexpanded("$MODE".into())
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("30s").unwrap().1, Duration::from_secs(30));
        assert_eq!(
            parse_go_duration("1m30s").unwrap().1,
            Duration::from_secs(90)
        );
        assert_eq!(
            parse_go_duration("1.5h").unwrap().1,
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("500ms").unwrap().1,
            Duration::from_millis(500)
        );
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("5x").is_err());
        assert!(parse_go_duration("").is_err());
        assert_eq!(parse_health_interval("interval", "0s").unwrap(), None);
        assert!(parse_health_interval("interval", "10us").is_err());
        assert!(parse_health_interval("interval", "-1s").is_err());
    }

    #[test]
    fn csv() {
        assert_eq!(split_csv("a,b").unwrap(), ["a", "b"]);
        assert_eq!(split_csv("\"a,b\",c").unwrap(), ["a,b", "c"]);
        assert_eq!(split_csv("\"a\"\"b\"").unwrap(), ["a\"b"]);
        assert_eq!(split_csv("").unwrap(), [""]);
        assert!(split_csv("\"open").is_err());
    }
}
