//! BuildKit's build checks that need no build context (`docker build
//! --check`), with BuildKit's rule names, messages and documentation links,
//! and its `# check=skip=<rules>|all;error=true` directive.
//!
//! Implemented: StageNameCasing, FromAsCasing, NoEmptyContinuation,
//! ConsistentInstructionCasing, DuplicateStageName, ReservedStageName,
//! JSONArgsRecommended, MaintainerDeprecated, UndefinedArgInFrom,
//! WorkdirRelativePath, MultipleInstructionsDisallowed,
//! LegacyKeyValueFormat, RedundantTargetPlatform, SecretsUsedInArgOrEnv,
//! InvalidDefaultArgInFrom, FromPlatformFlagConstDisallowed,
//! ExposeProtoCasing, ExposeInvalidFormat.
//!
//! Base images are not pulled, so checks behave as if every base image had
//! an empty config (no SHELL, no WORKDIR, no ENV) — the same assumption
//! BuildKit makes for `FROM scratch`. For that reason UndefinedVar (which
//! needs the base image's ENV) is not run.

use std::collections::BTreeSet;

use serde::Serialize;

use super::ast::{Command, CommandLine, Dockerfile, Instruction, Keyword};
use super::error::{DockerfileError, ErrorKind, Position};
use super::expand::Lexer;
use super::stages::{self, Base, BuildOptions, StageGraph, StageScope, Vars};
use crate::suggest;

/// One build check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub description: &'static str,
    /// The slug of the rule's page under docs.docker.com/go/dockerfile/rule/.
    pub slug: &'static str,
}

impl Rule {
    pub fn url(&self) -> String {
        format!("https://docs.docker.com/go/dockerfile/rule/{}/", self.slug)
    }
}

macro_rules! rules {
    ($($ident:ident = $name:literal, $slug:literal, $desc:literal;)*) => {
        $(pub const $ident: Rule = Rule { name: $name, description: $desc, slug: $slug };)*
        /// Every rule this module implements.
        pub const ALL_RULES: &[Rule] = &[$($ident),*];
    };
}

rules! {
    STAGE_NAME_CASING = "StageNameCasing", "stage-name-casing", "Stage names should be lowercase";
    FROM_AS_CASING = "FromAsCasing", "from-as-casing", "The 'as' keyword should match the case of the 'from' keyword";
    NO_EMPTY_CONTINUATION = "NoEmptyContinuation", "no-empty-continuation", "Empty continuation lines will become errors in a future release";
    CONSISTENT_INSTRUCTION_CASING = "ConsistentInstructionCasing", "consistent-instruction-casing", "All commands within the Dockerfile should use the same casing (either upper or lower)";
    DUPLICATE_STAGE_NAME = "DuplicateStageName", "duplicate-stage-name", "Stage names should be unique";
    RESERVED_STAGE_NAME = "ReservedStageName", "reserved-stage-name", "Reserved words should not be used as stage names";
    JSON_ARGS_RECOMMENDED = "JSONArgsRecommended", "json-args-recommended", "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals";
    MAINTAINER_DEPRECATED = "MaintainerDeprecated", "maintainer-deprecated", "The MAINTAINER instruction is deprecated, use a label instead to define an image author";
    UNDEFINED_ARG_IN_FROM = "UndefinedArgInFrom", "undefined-arg-in-from", "FROM command must use declared ARGs";
    WORKDIR_RELATIVE_PATH = "WorkdirRelativePath", "workdir-relative-path", "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes";
    MULTIPLE_INSTRUCTIONS_DISALLOWED = "MultipleInstructionsDisallowed", "multiple-instructions-disallowed", "Multiple instructions of the same type should not be used in the same stage";
    LEGACY_KEY_VALUE_FORMAT = "LegacyKeyValueFormat", "legacy-key-value-format", "Legacy key/value format with whitespace separator should not be used";
    REDUNDANT_TARGET_PLATFORM = "RedundantTargetPlatform", "redundant-target-platform", "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior";
    SECRETS_USED_IN_ARG_OR_ENV = "SecretsUsedInArgOrEnv", "secrets-used-in-arg-or-env", "Sensitive data should not be used in the ARG or ENV commands";
    INVALID_DEFAULT_ARG_IN_FROM = "InvalidDefaultArgInFrom", "invalid-default-arg-in-from", "Default value for global ARG results in an empty or invalid base image name";
    FROM_PLATFORM_FLAG_CONST_DISALLOWED = "FromPlatformFlagConstDisallowed", "from-platform-flag-const-disallowed", "FROM --platform flag should not use a constant value";
    EXPOSE_PROTO_CASING = "ExposeProtoCasing", "expose-proto-casing", "Protocol in EXPOSE instruction should be lowercase";
    EXPOSE_INVALID_FORMAT = "ExposeInvalidFormat", "expose-invalid-format", "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release";
}

/// What `# check=` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckConfig {
    pub skip: BTreeSet<String>,
    pub skip_all: bool,
    /// Findings fail the build (and `berth dockerfile check`).
    pub error: bool,
}

impl CheckConfig {
    /// Parses the value of `# check=` (BuildKit's `ParseLintOptions`):
    /// `skip=A,B` or `skip=all`, and `error=true|false`, separated by `;`.
    pub fn parse(value: &str) -> Result<CheckConfig, String> {
        let mut config = CheckConfig::default();
        let value = value.trim();
        if value.is_empty() {
            return Ok(config);
        }
        for part in value.splitn(2, ';') {
            let Some((key, v)) = part.split_once('=') else {
                return Err(format!("invalid check option {part:?}"));
            };
            match key.trim() {
                "skip" => {
                    let v = v.trim();
                    if v == "all" {
                        config.skip_all = true;
                    } else {
                        config.skip = v.split(',').map(|r| r.trim().to_string()).collect();
                    }
                }
                "error" => {
                    config.error = match v.trim() {
                        "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                        "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                        other => {
                            return Err(format!(
                                "failed to parse check option {part:?}: invalid boolean {other:?}"
                            ));
                        }
                    }
                }
                other => return Err(format!("invalid check option {other:?}")),
            }
        }
        Ok(config)
    }
}

/// One violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub description: &'static str,
    pub url: String,
    pub message: String,
    pub line: usize,
    pub end_line: usize,
}

/// The outcome of `berth dockerfile check`.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub config: CheckConfig,
    pub findings: Vec<Finding>,
    /// A problem that stops the build (stage graph, expansion), if any.
    pub error: Option<DockerfileError>,
}

impl Report {
    /// True when the check fails: a build error, or findings under
    /// `error=true`.
    pub fn failed(&self) -> bool {
        self.error.is_some() || (self.config.error && !self.findings.is_empty())
    }

    /// One line: what was found and whether it fails.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return e.to_string();
        }
        let rules: BTreeSet<&str> = self.findings.iter().map(|f| f.rule).collect();
        if self.config.error && !rules.is_empty() {
            let list: Vec<&str> = rules.into_iter().collect();
            return format!("lint violation found for rules: {}", list.join(", "));
        }
        match self.findings.len() {
            0 => "no warnings found".to_string(),
            1 => "1 warning found".to_string(),
            n => format!("{n} warnings found"),
        }
    }
}

struct Linter {
    config: CheckConfig,
    findings: Vec<Finding>,
}

impl Linter {
    fn report(&mut self, rule: Rule, line: usize, end_line: usize, message: String) {
        if self.config.skip_all || self.config.skip.contains(rule.name) {
            return;
        }
        self.findings.push(Finding {
            rule: rule.name,
            description: rule.description,
            url: rule.url(),
            message,
            line,
            end_line,
        });
    }

    fn at(&mut self, rule: Rule, instr: &Instruction, message: String) {
        self.report(rule, instr.start.line, instr.end_line, message);
    }
}

/// Parses and checks a Dockerfile. Parse errors are returned as `Err`.
pub fn check_source(source: &str, file: &str) -> Result<Report, DockerfileError> {
    let df = super::parse(source, file)?;
    check(&df)
}

/// Runs the checks on a parsed Dockerfile. Only a malformed `# check=`
/// directive is an `Err`; build errors found on the way are in the report.
pub fn check(df: &Dockerfile) -> Result<Report, DockerfileError> {
    let config = match df.directive("check") {
        Some(v) => CheckConfig::parse(v).map_err(|m| {
            let line = df
                .directives
                .iter()
                .find(|d| d.name == "check")
                .map_or(1, |d| d.line);
            DockerfileError::new(
                &df.file,
                Position::new(line, 1),
                None,
                ErrorKind::InvalidCheckDirective(m),
            )
        })?,
        None => CheckConfig::default(),
    };
    let mut linter = Linter {
        config: config.clone(),
        findings: Vec::new(),
    };
    for &line in &df.empty_continuation_lines {
        linter.report(
            NO_EMPTY_CONTINUATION,
            line,
            line,
            "Empty continuation line".to_string(),
        );
    }
    check_instructions(df, &mut linter);
    let error = check_stages(df, &mut linter).err();
    linter.findings.sort_by_key(|f| f.line);
    Ok(Report {
        config,
        findings: linter.findings,
        error,
    })
}

fn is_self_consistent(s: &str) -> bool {
    s == s.to_lowercase() || s == s.to_uppercase()
}

/// Checks that need only the instructions.
fn check_instructions(df: &Dockerfile, linter: &mut Linter) {
    let first_from = df
        .instructions
        .iter()
        .position(|i| i.keyword == Keyword::From)
        .unwrap_or(df.instructions.len());
    let mut stage_names: BTreeSet<String> = BTreeSet::new();
    for instr in &df.instructions {
        match &instr.command {
            Command::From(from) => {
                if let Some(name) = &from.stage_name_as_written
                    && *name != name.to_lowercase()
                {
                    linter.at(
                        STAGE_NAME_CASING,
                        instr,
                        format!("Stage name '{name}' should be lowercase"),
                    );
                }
                if let Some(as_kw) = &from.as_keyword {
                    let from_kw: &str = &instr.keyword_as_written;
                    let lower = from_kw == from_kw.to_lowercase();
                    let upper = from_kw == from_kw.to_uppercase();
                    let mismatch = (lower && *as_kw != as_kw.to_lowercase())
                        || (!lower && upper && *as_kw != as_kw.to_uppercase());
                    if mismatch {
                        linter.at(
                            FROM_AS_CASING,
                            instr,
                            format!("'{as_kw}' and '{from_kw}' keywords' casing do not match"),
                        );
                    }
                }
                if let Some(name) = &from.stage_name {
                    if name == "scratch" || name == "context" {
                        linter.at(
                            RESERVED_STAGE_NAME,
                            instr,
                            format!(
                                "Stage name should not use the same name as reserved stage {name:?}"
                            ),
                        );
                    }
                    if !stage_names.insert(name.to_string()) {
                        linter.at(
                            DUPLICATE_STAGE_NAME,
                            instr,
                            format!("Duplicate stage name {name:?}, stage names should be unique"),
                        );
                    }
                }
            }
            Command::Maintainer(_) => linter.at(
                MAINTAINER_DEPRECATED,
                instr,
                "Maintainer instruction is deprecated in favor of using label".to_string(),
            ),
            _ => {}
        }
    }
    // Casing: the majority casing of everything from the first FROM on.
    let staged = &df.instructions[first_from..];
    let (mut lower, mut upper) = (0, 0);
    for instr in staged {
        let kw: &str = &instr.keyword_as_written;
        if is_self_consistent(kw) {
            if kw == kw.to_lowercase() {
                lower += 1;
            } else {
                upper += 1;
            }
        }
    }
    let majority_lower = lower > upper;
    for instr in staged {
        let kw: &str = &instr.keyword_as_written;
        let expected = if majority_lower && kw != kw.to_lowercase() {
            Some("lowercase")
        } else if !majority_lower && kw != kw.to_uppercase() {
            Some("uppercase")
        } else {
            None
        };
        if let Some(expected) = expected {
            linter.at(
                CONSISTENT_INSTRUCTION_CASING,
                instr,
                format!(
                    "Command '{kw}' should match the case of the command majority ({expected})"
                ),
            );
        }
    }
}

/// BuildKit's secret-name test: a `_`-separated part of the name is one of
/// these words (and none is `public`).
fn looks_secret(name: &str) -> bool {
    const DENY: [&str; 10] = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    let parts: Vec<String> = name.split('_').map(str::to_ascii_lowercase).collect();
    parts.iter().any(|p| DENY.contains(&p.as_str())) && !parts.iter().any(|p| p == "public")
}

/// CMD, ENTRYPOINT and HEALTHCHECK: only the last one of a stage counts,
/// so the earlier one is reported.
fn used_once<'a, 'src>(
    seen: &mut Option<&'a Instruction<'src>>,
    instr: &'a Instruction<'src>,
    linter: &mut Linter,
) {
    if let Some(prev) = seen.replace(instr) {
        let name: &str = &instr.keyword_as_written;
        linter.at(
            MULTIPLE_INSTRUCTIONS_DISALLOWED,
            prev,
            format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used"),
        );
    }
}

/// Checks that follow the stages and their variables, as a build would.
fn check_stages(df: &Dockerfile, linter: &mut Linter) -> Result<(), DockerfileError> {
    let opts = BuildOptions::default();
    let lexer = Lexer::new(df.escape);
    // FROM lines against the global args, before the stage graph (which
    // fails on a base name that expands to nothing), as BuildKit orders it.
    let predefined = stages::predefined_args(&opts, "");
    let (globals, declared) = stages::global_args(df, &opts, &lexer, predefined.clone(), true)?;
    let (defaults_only, _) = stages::global_args(df, &opts, &lexer, predefined, false)?;
    let mut known: BTreeSet<String> = declared.iter().cloned().collect();
    known.extend(globals.keys().map(str::to_string));
    let froms: Vec<&Instruction> = df
        .instructions
        .iter()
        .filter(|i| i.keyword == Keyword::From)
        .collect();
    let stage_names: Vec<&str> = froms
        .iter()
        .filter_map(|i| match &i.command {
            Command::From(f) => f.stage_name.as_deref(),
            _ => None,
        })
        .collect();
    for instr in &froms {
        let Command::From(from) = &instr.command else {
            continue;
        };
        if let Ok(e) = lexer.process(&from.image, &defaults_only)
            && berth_oci::Reference::parse(&e.result).is_err()
            && !stage_names.contains(&e.result.as_str())
        {
            linter.at(
                INVALID_DEFAULT_ARG_IN_FROM,
                instr,
                format!(
                    "Default value for ARG {} results in empty or invalid base image name",
                    from.image
                ),
            );
        }
    }
    for instr in &froms {
        let Command::From(from) = &instr.command else {
            continue;
        };
        let undeclared = |unmatched: &BTreeSet<String>, linter: &mut Linter| {
            for var in unmatched {
                if known.contains(var) {
                    continue;
                }
                let hint = suggest::closest(var, known.iter().map(String::as_str), true)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default();
                linter.at(
                    UNDEFINED_ARG_IN_FROM,
                    instr,
                    format!("FROM argument '{var}' is not declared{hint}"),
                );
            }
        };
        if let Ok(e) = lexer.process(&from.image, &globals) {
            undeclared(&e.unmatched, linter);
        }
        if let Some(platform) = &from.platform
            && let Ok(e) = lexer.process(platform, &globals)
        {
            undeclared(&e.unmatched, linter);
            if e.matched.len() == 1
                && e.unmatched.is_empty()
                && e.matched.contains("TARGETPLATFORM")
                && globals.get("TARGETPLATFORM") == Some(e.result.as_str())
            {
                linter.at(
                    REDUNDANT_TARGET_PLATFORM,
                    instr,
                    format!("Setting platform to predefined {platform} in FROM is redundant as this is the default behavior"),
                );
            }
            if e.matched.is_empty()
                && e.unmatched.is_empty()
                && let Ok(p) = stages::Platform::parse(&e.result)
            {
                let name = from.stage_name.clone().unwrap_or_default();
                if !name.contains(&p.os) && !name.contains(&p.architecture) {
                    linter.at(
                        FROM_PLATFORM_FLAG_CONST_DISALLOWED,
                        instr,
                        format!(
                            "FROM --platform flag should not use constant value {:?}",
                            e.result
                        ),
                    );
                }
            }
        }
    }
    let graph = StageGraph::new(df, &opts)?;

    // Every stage, in order, as BuildKit's lint does (all stages).
    struct Inherited {
        scope: StageScope,
        workdir_set: bool,
        shell_set: bool,
    }
    let mut finished: Vec<Option<Inherited>> = Vec::with_capacity(graph.stages.len());
    for stage in &graph.stages {
        let (mut scope, mut workdir_set, mut shell_set) = match stage.base {
            Base::Stage(parent) => match finished.get(parent).and_then(Option::as_ref) {
                Some(p) => (p.scope.clone(), p.workdir_set, p.shell_set),
                None => (
                    StageScope::new(&graph, &opts, df.escape, Vars::new()),
                    false,
                    false,
                ),
            },
            _ => (
                StageScope::new(&graph, &opts, df.escape, Vars::new()),
                false,
                false,
            ),
        };
        let mut cmd_seen: Option<&Instruction> = None;
        let mut entrypoint_seen: Option<&Instruction> = None;
        let mut healthcheck_seen: Option<&Instruction> = None;
        for &i in &stage.instructions {
            let instr = &df.instructions[i];
            let expanded = scope.apply(df, instr)?;
            let name: &str = &instr.keyword_as_written;
            match &expanded.command {
                Command::Env(pairs) | Command::Label(pairs) => {
                    for p in pairs {
                        if p.legacy {
                            linter.at(
                                LEGACY_KEY_VALUE_FORMAT,
                                instr,
                                format!("\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"),
                            );
                        }
                        if instr.keyword == Keyword::Env && looks_secret(&p.key) {
                            linter.at(
                                SECRETS_USED_IN_ARG_OR_ENV,
                                instr,
                                format!("Do not use ARG or ENV instructions for sensitive data (ENV {:?})", p.key),
                            );
                        }
                    }
                }
                Command::Arg(decls) => {
                    for d in decls {
                        if looks_secret(&d.name) {
                            linter.at(
                                SECRETS_USED_IN_ARG_OR_ENV,
                                instr,
                                format!("Do not use ARG or ENV instructions for sensitive data (ARG {:?})", d.name),
                            );
                        }
                    }
                }
                Command::Workdir(path) => {
                    if !workdir_set && !path.starts_with('/') {
                        linter.at(
                            WORKDIR_RELATIVE_PATH,
                            instr,
                            format!("Relative workdir {path:?} can have unexpected results if the base image changes"),
                        );
                    }
                    workdir_set = true;
                }
                Command::Cmd(cl) | Command::Entrypoint(cl) => {
                    let seen = if instr.keyword == Keyword::Cmd {
                        &mut cmd_seen
                    } else {
                        &mut entrypoint_seen
                    };
                    used_once(seen, instr, linter);
                    if matches!(cl, CommandLine::Shell(_)) && !shell_set {
                        linter.at(
                            JSON_ARGS_RECOMMENDED,
                            instr,
                            format!("JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"),
                        );
                    }
                }
                Command::Healthcheck(_) => used_once(&mut healthcheck_seen, instr, linter),
                Command::Shell(_) => shell_set = true,
                Command::Expose(ports) => {
                    for port in ports {
                        if port.contains(':') {
                            linter.at(
                                EXPOSE_INVALID_FORMAT,
                                instr,
                                format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{port}'"),
                            );
                        }
                        if let Some((_, proto)) = port.split_once('/')
                            && proto != proto.to_lowercase()
                        {
                            linter.at(
                                EXPOSE_PROTO_CASING,
                                instr,
                                format!("Defined protocol '{port}' in EXPOSE instruction should be lowercase"),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        finished.push(Some(Inherited {
            scope,
            workdir_set,
            shell_set,
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_directive_options() {
        let c = CheckConfig::parse("skip=JSONArgsRecommended,StageNameCasing;error=true").unwrap();
        assert!(c.error);
        assert!(c.skip.contains("JSONArgsRecommended"));
        assert!(c.skip.contains("StageNameCasing"));
        assert!(CheckConfig::parse("skip=all").unwrap().skip_all);
        assert!(CheckConfig::parse("error=maybe").is_err());
        assert!(CheckConfig::parse("nope=1").is_err());
        assert!(CheckConfig::parse("skip").is_err());
        assert_eq!(CheckConfig::parse(" ").unwrap(), CheckConfig::default());
    }

    #[test]
    fn secret_names() {
        assert!(looks_secret("AWS_SECRET_ACCESS_KEY"));
        assert!(looks_secret("github_token"));
        assert!(looks_secret("PASSWORD"));
        assert!(!looks_secret("PUBLIC_KEY"));
        assert!(!looks_secret("KEYBOARD"));
        assert!(!looks_secret("TOKENIZER_VERSION"));
    }
}
