//! Stages and variables: the multi-stage graph BuildKit builds from a
//! Dockerfile, and the scoping of ARG and ENV values as each stage runs.
//!
//! Scoping, as BuildKit does it:
//! - ARGs before the first FROM are *global*: they (and the predefined
//!   platform args, `TARGETPLATFORM` … `BUILDVARIANT`, `TARGETSTAGE`) are
//!   visible in FROM lines only. Inside a stage, `ARG NAME` without a value
//!   re-declares a global one and takes its value.
//! - A build argument (`--build-arg`) overrides the default of an ARG that is
//!   declared; undeclared build args are ignored, except the proxy ones
//!   (`HTTP_PROXY`, `https_proxy`, …) that RUN sees without a declaration.
//! - Inside a stage, ARG (once it has a value) and ENV write to the same
//!   variable table, in order: an ENV after an ARG of the same name wins.
//!   All of one ENV's values are expanded before any is set, so in
//!   `ENV a=1 b=$a`, `b` sees the old `a`.
//! - A stage built `FROM` another stage starts with that stage's variables.
//! - `COPY --from` and `RUN --mount=from=` are resolved as written (BuildKit
//!   does not expand them): a number is a stage index, a stage name (case
//!   insensitive) is that stage, anything else is an image.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use super::ast::{
    Add, Chmod, Command, Copy, Dockerfile, Instruction, KeyValue, Keyword, RunMount, Source,
};
use super::error::{DockerfileError, ErrorKind, Position};
use super::expand::{Expansion, Lexer, VarLookup};
use super::flags;

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: String,
}

impl Platform {
    /// The platform berth itself runs on.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "aarch64" => ("arm64", ""),
            "arm" => ("arm", "v7"),
            "x86" => ("386", ""),
            "powerpc64" => ("ppc64le", ""),
            "s390x" => ("s390x", ""),
            "riscv64" => ("riscv64", ""),
            other => (other, ""),
        };
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: variant.to_string(),
        }
    }

    /// Parses `os/arch[/variant]` (or just `arch`, meaning linux), with the
    /// usual aliases (`x86_64`, `aarch64`).
    pub fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let lower = |s: &str| s.to_ascii_lowercase();
        let (os, arch, variant) = match parts.as_slice() {
            [arch] if !arch.is_empty() => ("linux".to_string(), lower(arch), String::new()),
            [os, arch] if !os.is_empty() && !arch.is_empty() => {
                (lower(os), lower(arch), String::new())
            }
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() => {
                (lower(os), lower(arch), lower(variant))
            }
            _ => {
                return Err(format!(
                    "{text:?}: unknown operating system or architecture"
                ));
            }
        };
        let valid = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        if !valid(&os) || !valid(&arch) || !valid(&variant) {
            return Err(format!(
                "{text:?}: unknown operating system or architecture"
            ));
        }
        let arch = match arch.as_str() {
            "x86_64" | "x86-64" => "amd64".to_string(),
            "aarch64" => "arm64".to_string(),
            "i386" => "386".to_string(),
            _ => arch,
        };
        Ok(Platform {
            os,
            architecture: arch,
            variant,
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// What a build is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildOptions {
    /// `--build-arg NAME=value`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: build up to this stage; default the last one.
    pub target: Option<String>,
    pub target_platform: Platform,
    pub build_platform: Platform,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            build_args: BTreeMap::new(),
            target: None,
            target_platform: Platform::host(),
            build_platform: Platform::host(),
        }
    }
}

/// The predefined proxy arguments: passed to RUN without an ARG.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Arguments that configure BuildKit itself and never become variables.
const NON_ENV_ARGS: [&str; 2] = ["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// An ordered variable table where setting a name replaces its value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Vars(Vec<(String, String)>);

impl Vars {
    pub fn new() -> Self {
        Vars(Vec::new())
    }

    pub fn set(&mut self, key: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.0.push((key.to_string(), value.to_string())),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl VarLookup for Vars {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Vars {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut vars = Vars::new();
        for (k, v) in iter {
            vars.set(&k.into(), &v.into());
        }
        vars
    }
}

/// What a stage is built on.
#[derive(Debug, Clone, PartialEq)]
pub enum Base {
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference (expanded).
    Image(String),
}

/// Why one stage needs another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyKind {
    Base,
    CopyFrom,
    MountFrom,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    pub stage: usize,
    /// Index into [`Dockerfile::instructions`] of the instruction that needs it.
    pub instruction: usize,
    pub kind: DependencyKind,
}

/// One build stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub index: usize,
    /// Lower-case `AS` name.
    pub name: Option<String>,
    pub base: Base,
    /// The platform from `--platform`, expanded.
    pub platform: Option<String>,
    /// Index of the FROM instruction.
    pub from_instruction: usize,
    /// Indices of the stage's other instructions.
    pub instructions: Vec<usize>,
    pub dependencies: Vec<Dependency>,
    /// Images used by `COPY --from` or `RUN --mount=from=` (not stages).
    pub image_sources: Vec<String>,
}

impl Stage {
    /// `stage-N` for unnamed stages, as BuildKit names them in progress.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// The stages of a Dockerfile and how they depend on each other.
#[derive(Debug, Clone, PartialEq)]
pub struct StageGraph {
    pub stages: Vec<Stage>,
    /// Global variables: predefined args and ARGs before the first FROM.
    pub global_args: Vars,
    /// Every name declared by an ARG before the first FROM (with or without
    /// a value).
    pub declared_global_args: Vec<String>,
    /// The stage `--target` selects (the last one by default).
    pub target: usize,
}

/// The predefined platform args for these options.
pub fn predefined_args(opts: &BuildOptions, target_stage: &str) -> Vars {
    let b = &opts.build_platform;
    let t = &opts.target_platform;
    let mut vars = Vars::new();
    for (k, v) in [
        ("BUILDPLATFORM", b.to_string()),
        ("BUILDOS", b.os.clone()),
        ("BUILDARCH", b.architecture.clone()),
        ("BUILDVARIANT", b.variant.clone()),
        ("TARGETPLATFORM", t.to_string()),
        ("TARGETOS", t.os.clone()),
        ("TARGETARCH", t.architecture.clone()),
        ("TARGETVARIANT", t.variant.clone()),
        ("TARGETSTAGE", target_stage.to_string()),
    ] {
        let value = opts.build_args.get(k).cloned().unwrap_or(v);
        vars.set(k, &value);
    }
    vars
}

fn expansion_error(df: &Dockerfile, instr: &Instruction, message: String) -> DockerfileError {
    DockerfileError::new(
        &df.file,
        instr.args_position,
        Some(instr.keyword.as_str()),
        ErrorKind::Expansion {
            instruction: instr.keyword.upper(),
            message,
        },
    )
}

fn stage_error(
    df: &Dockerfile,
    position: Position,
    instr: Option<&Instruction>,
    message: String,
) -> DockerfileError {
    DockerfileError::new(
        &df.file,
        position,
        instr.map(|i| i.keyword.as_str()),
        ErrorKind::Stage(message),
    )
}

/// Go's `strconv.Atoi`, which decides whether `--from=N` is an index.
fn as_index(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<i64>().unwrap_or(i64::MAX))
}

/// Evaluates the global ARGs: in order, a build argument wins over the
/// default, a default is expanded with the globals before it.
pub fn global_args(
    df: &Dockerfile,
    opts: &BuildOptions,
    lexer: &Lexer,
    predefined: Vars,
    use_build_args: bool,
) -> Result<(Vars, Vec<String>), DockerfileError> {
    let mut vars = predefined;
    let mut declared = Vec::new();
    for instr in &df.instructions {
        if instr.keyword == Keyword::From {
            break;
        }
        let Command::Arg(decls) = &instr.command else {
            continue;
        };
        for decl in decls {
            declared.push(decl.name.to_string());
            let given = if use_build_args {
                opts.build_args.get(decl.name.as_ref()).cloned()
            } else {
                None
            };
            let value = match (given, &decl.default) {
                (Some(v), _) => Some(v),
                (None, Some(default)) => Some(
                    lexer
                        .process_word(default, &vars)
                        .map_err(|e| expansion_error(df, instr, e.to_string()))?,
                ),
                (None, None) => None,
            };
            if let Some(v) = value {
                vars.set(&decl.name, &v);
            }
        }
    }
    Ok((vars, declared))
}

impl StageGraph {
    /// Builds the stage graph: expands FROM lines with the global args,
    /// links stages, checks `--target`, stage indices and cycles.
    pub fn new(df: &Dockerfile, opts: &BuildOptions) -> Result<StageGraph, DockerfileError> {
        let lexer = Lexer::new(df.escape);
        let froms: Vec<usize> = df
            .instructions
            .iter()
            .enumerate()
            .filter(|(_, i)| i.keyword == Keyword::From)
            .map(|(n, _)| n)
            .collect();
        let last_name = froms
            .last()
            .and_then(|&n| match &df.instructions[n].command {
                Command::From(f) => f.stage_name.as_deref().map(str::to_string),
                _ => None,
            });
        let target_name = opts.target.clone().or(last_name).unwrap_or_default();
        let predefined = predefined_args(opts, &target_name);
        let (globals, declared) = global_args(df, opts, &lexer, predefined, true)?;

        let mut stages: Vec<Stage> = Vec::with_capacity(froms.len());
        for (index, &from_idx) in froms.iter().enumerate() {
            let instr = &df.instructions[from_idx];
            let Command::From(from) = &instr.command else {
                continue;
            };
            let image = lexer
                .process_word(&from.image, &globals)
                .map_err(|e| expansion_error(df, instr, e.to_string()))?;
            if image.is_empty() {
                return Err(expansion_error(
                    df,
                    instr,
                    format!("base name ({}) should not be blank", from.image),
                ));
            }
            let platform = match &from.platform {
                Some(p) => {
                    let value = lexer
                        .process_word(p, &globals)
                        .map_err(|e| expansion_error(df, instr, e.to_string()))?;
                    if value.is_empty() {
                        return Err(expansion_error(
                            df,
                            instr,
                            format!("empty platform value from expression {p}"),
                        ));
                    }
                    Platform::parse(&value).map_err(|e| {
                        expansion_error(df, instr, format!("failed to parse platform {p}: {e}"))
                    })?;
                    Some(value)
                }
                None => None,
            };
            // FROM can only name a stage defined before it.
            let base = match stages
                .iter()
                .rev()
                .find(|s| s.name.as_deref() == Some(image.as_str()))
            {
                Some(s) => Base::Stage(s.index),
                None if image == "scratch" => Base::Scratch,
                None => Base::Image(image),
            };
            let end = froms
                .get(index + 1)
                .copied()
                .unwrap_or(df.instructions.len());
            let mut stage = Stage {
                index,
                name: from.stage_name.as_deref().map(str::to_string),
                base: base.clone(),
                platform,
                from_instruction: from_idx,
                instructions: (from_idx + 1..end).collect(),
                dependencies: Vec::new(),
                image_sources: Vec::new(),
            };
            if let Base::Stage(parent) = base {
                stage.dependencies.push(Dependency {
                    stage: parent,
                    instruction: from_idx,
                    kind: DependencyKind::Base,
                });
            }
            stages.push(stage);
        }

        let names: Vec<Option<String>> = stages.iter().map(|s| s.name.clone()).collect();
        let resolve = |reference: &str| -> Result<Option<usize>, String> {
            if let Some(n) = as_index(reference) {
                if n < 0 || n as usize >= names.len() {
                    return Err(format!("invalid stage index {n}"));
                }
                return Ok(Some(n as usize));
            }
            let lower = reference.to_ascii_lowercase();
            Ok(names
                .iter()
                .position(|n| n.as_deref() == Some(lower.as_str())))
        };
        for si in 0..stages.len() {
            // The ONBUILD triggers of a base stage run at the start of this one.
            let mut triggers = Vec::new();
            if let Base::Stage(parent) = stages[si].base {
                for &i in &stages[parent].instructions {
                    if let Command::Onbuild(nested) = &df.instructions[i].command {
                        triggers.push((i, nested.as_ref()));
                    }
                }
            }
            let own = stages[si]
                .instructions
                .iter()
                .map(|&i| (i, &df.instructions[i]));
            let mut deps = Vec::new();
            let mut images = Vec::new();
            for (idx, instr) in triggers.into_iter().chain(own) {
                let mut refs: Vec<(String, DependencyKind)> = Vec::new();
                match &instr.command {
                    Command::Copy(Copy { from: Some(f), .. }) => {
                        refs.push((f.to_string(), DependencyKind::CopyFrom))
                    }
                    Command::Run(run) => {
                        for m in &run.mounts {
                            if let Some(f) = &m.from {
                                refs.push((f.to_string(), DependencyKind::MountFrom));
                            }
                        }
                    }
                    _ => {}
                }
                for (reference, kind) in refs {
                    match resolve(&reference) {
                        Ok(Some(stage)) => deps.push(Dependency {
                            stage,
                            instruction: idx,
                            kind,
                        }),
                        Ok(None) => images.push(reference),
                        Err(message) => {
                            let at = &df.instructions[idx];
                            return Err(stage_error(df, at.start, Some(at), message));
                        }
                    }
                }
            }
            stages[si].dependencies.extend(deps);
            stages[si].image_sources = images;
        }

        let target = match &opts.target {
            Some(t) => {
                let lower = t.to_ascii_lowercase();
                stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(lower.as_str()))
                    .ok_or_else(|| {
                        let names = stages.iter().filter_map(|s| s.name.as_deref());
                        let hint = crate::suggest::closest(&lower, names, true)
                            .map(|s| format!(" (did you mean {s}?)"))
                            .unwrap_or_default();
                        stage_error(
                            df,
                            Position::new(1, 1),
                            None,
                            format!("target stage {t:?} could not be found{hint}"),
                        )
                    })?
            }
            None => stages.len().saturating_sub(1),
        };

        let graph = StageGraph {
            stages,
            global_args: globals,
            declared_global_args: declared,
            target,
        };
        graph.check_cycles(df)?;
        graph.check_order(df)?;
        Ok(graph)
    }

    /// The index of the stage with this (case-insensitive) name.
    pub fn stage_by_name(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    fn check_cycles(&self, df: &Dockerfile) -> Result<(), DockerfileError> {
        // Iterative depth-first search; 0 = new, 1 = on the path, 2 = done.
        let mut mark = vec![0u8; self.stages.len()];
        for root in 0..self.stages.len() {
            if mark[root] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            mark[root] = 1;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(dep) = self.stages[node].dependencies.get(*next) {
                    *next += 1;
                    match mark[dep.stage] {
                        0 => {
                            mark[dep.stage] = 1;
                            stack.push((dep.stage, 0));
                        }
                        1 => {
                            let at = &df.instructions[dep.instruction];
                            return Err(stage_error(
                                df,
                                at.start,
                                Some(at),
                                format!(
                                    "circular dependency detected on stage: {}",
                                    self.stages[root].display_name()
                                ),
                            ));
                        }
                        _ => {}
                    }
                } else {
                    mark[node] = 2;
                    stack.pop();
                }
            }
        }
        Ok(())
    }

    /// BuildKit dispatches stages in file order, so a stage the target needs
    /// may only copy or mount from stages defined before it.
    fn check_order(&self, df: &Dockerfile) -> Result<(), DockerfileError> {
        for &si in &self.build_order() {
            let stage = &self.stages[si];
            for dep in &stage.dependencies {
                if dep.stage > si {
                    let at = &df.instructions[dep.instruction];
                    let from = self.stages[dep.stage].display_name();
                    let message = match dep.kind {
                        DependencyKind::MountFrom => format!(
                            "cannot mount from stage {from:?} to {:?}, stage needs to be defined before current command",
                            stage.display_name()
                        ),
                        _ => format!(
                            "cannot copy from stage {from:?}, it needs to be defined before current stage {:?}",
                            stage.display_name()
                        ),
                    };
                    return Err(stage_error(df, at.start, Some(at), message));
                }
            }
        }
        Ok(())
    }

    /// The stages needed for the target, each after the stages it needs
    /// (which is file order, since dependencies point backwards).
    pub fn build_order(&self) -> Vec<usize> {
        let mut needed = vec![false; self.stages.len()];
        let mut todo = vec![self.target];
        while let Some(s) = todo.pop() {
            if s >= needed.len() || needed[s] {
                continue;
            }
            needed[s] = true;
            todo.extend(self.stages[s].dependencies.iter().map(|d| d.stage));
        }
        (0..self.stages.len()).filter(|&s| needed[s]).collect()
    }
}

/// The variables of one stage while its instructions are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct StageScope {
    lexer: Lexer,
    /// Variables that expansion sees: base image ENV, then ENV and ARG
    /// values of this stage (and of the stages it is built on), in order.
    pub vars: Vars,
    /// The image config's ENV: like `vars` but without ARG values.
    pub env: Vars,
    /// ARGs declared in this stage (and its base stages), with their values.
    pub args: Vec<(String, Option<String>)>,
    globals: Vars,
    build_args: BTreeMap<String, String>,
}

impl StageScope {
    /// A scope for a stage built on an image whose config has `base_env`.
    pub fn new(graph: &StageGraph, opts: &BuildOptions, escape: char, base_env: Vars) -> Self {
        StageScope {
            lexer: Lexer::new(escape),
            vars: base_env.clone(),
            env: base_env,
            args: Vec::new(),
            globals: graph.global_args.clone(),
            build_args: opts.build_args.clone(),
        }
    }

    /// Expands a word the way BuildKit expands instruction arguments.
    pub fn expand(&self, word: &str) -> Result<Expansion, String> {
        self.lexer
            .process(word, &self.vars)
            .map_err(|e| e.to_string())
    }

    /// The environment RUN sees: the stage's variables plus the proxy build
    /// arguments, which need no ARG.
    pub fn run_env(&self) -> Vars {
        let mut vars = self.vars.clone();
        for name in PROXY_ARGS {
            if let Some(v) = self.build_args.get(name)
                && vars.get(name).is_none()
            {
                vars.set(name, v);
            }
        }
        vars
    }

    /// Applies one instruction of the stage: returns it with its words
    /// expanded (see the module doc for which), and records what ARG and ENV
    /// change.
    pub fn apply<'src>(
        &mut self,
        df: &Dockerfile<'src>,
        instr: &Instruction<'src>,
    ) -> Result<Instruction<'src>, DockerfileError> {
        let err = |m: String| expansion_error(df, instr, m);
        let word = |w: &str| {
            self.lexer
                .process_word(w, &self.vars)
                .map(Cow::Owned)
                .map_err(|e| err(e.to_string()))
        };
        let mut out = instr.clone();
        match &instr.command {
            Command::Arg(decls) => {
                let mut decls = decls.clone();
                for decl in &mut decls {
                    let given = self.build_args.get(decl.name.as_ref()).cloned();
                    let value = match (given, &decl.default) {
                        (Some(v), _) => Some(v),
                        (None, Some(d)) => Some(
                            self.lexer
                                .process_word(d, &self.vars)
                                .map_err(|e| err(e.to_string()))?,
                        ),
                        (None, None) => self.globals.get(&decl.name).map(str::to_string),
                    };
                    if let Some(v) = &value
                        && !NON_ENV_ARGS.contains(&decl.name.as_ref())
                    {
                        self.vars.set(&decl.name, v);
                    }
                    decl.default = value.clone().map(Cow::Owned);
                    self.args.push((decl.name.to_string(), value));
                }
                out.command = Command::Arg(decls);
            }
            Command::Env(pairs) => {
                let expanded = expand_pairs(pairs, &word)?;
                for p in &expanded {
                    self.vars.set(&p.key, &p.value);
                    self.env.set(&p.key, &p.value);
                }
                out.command = Command::Env(expanded);
            }
            Command::Label(pairs) => out.command = Command::Label(expand_pairs(pairs, &word)?),
            Command::Expose(ports) => {
                let mut all = Vec::new();
                for p in ports {
                    all.extend(
                        self.lexer
                            .process_words(p, &self.vars)
                            .map_err(|e| err(e.to_string()))?,
                    );
                }
                out.command = Command::Expose(all.into_iter().map(Cow::Owned).collect());
            }
            Command::Copy(c) => {
                let mut c = c.clone();
                c.sources = expand_sources(&c.sources, &word)?;
                c.dest = word(&c.dest)?;
                c.from = c.from.as_deref().map(&word).transpose()?;
                c.chown = c.chown.as_deref().map(&word).transpose()?;
                c.chmod = expand_chmod(c.chmod.as_ref(), &word, &err)?;
                c.exclude = c
                    .exclude
                    .iter()
                    .map(|e| word(e))
                    .collect::<Result<_, _>>()?;
                out.command = Command::Copy(c);
                self.expand_heredoc_bodies(&mut out, &err)?;
            }
            Command::Add(a) => {
                let mut a: Add = a.clone();
                a.sources = expand_sources(&a.sources, &word)?;
                a.dest = word(&a.dest)?;
                a.chown = a.chown.as_deref().map(&word).transpose()?;
                a.chmod = expand_chmod(a.chmod.as_ref(), &word, &err)?;
                a.checksum = a.checksum.as_deref().map(&word).transpose()?;
                a.exclude = a
                    .exclude
                    .iter()
                    .map(|e| word(e))
                    .collect::<Result<_, _>>()?;
                out.command = Command::Add(a);
                self.expand_heredoc_bodies(&mut out, &err)?;
            }
            Command::Run(run) => {
                let mut run = run.clone();
                run.mounts = run
                    .mounts
                    .iter()
                    .map(|m| expand_mount(m, &word, &err))
                    .collect::<Result<_, _>>()?;
                out.command = Command::Run(run);
            }
            Command::Volume { paths, exec_form } => {
                out.command = Command::Volume {
                    paths: paths.iter().map(|p| word(p)).collect::<Result<_, _>>()?,
                    exec_form: *exec_form,
                };
            }
            Command::User(u) => out.command = Command::User(word(u)?),
            Command::Workdir(w) => out.command = Command::Workdir(word(w)?),
            Command::StopSignal(s) => out.command = Command::StopSignal(word(s)?),
            // Shell bodies are left to the shell; ONBUILD runs in a child
            // build; MAINTAINER and HEALTHCHECK are taken literally.
            Command::From(_)
            | Command::Cmd(_)
            | Command::Entrypoint(_)
            | Command::Shell(_)
            | Command::Maintainer(_)
            | Command::Onbuild(_)
            | Command::Healthcheck(_) => {}
        }
        Ok(out)
    }

    /// COPY/ADD heredocs with an unquoted delimiter have their bodies
    /// expanded, quotes kept as written (BuildKit's `ExpandRaw`).
    fn expand_heredoc_bodies(
        &self,
        out: &mut Instruction<'_>,
        err: &dyn Fn(String) -> DockerfileError,
    ) -> Result<(), DockerfileError> {
        let mut raw = Lexer::new('\\');
        raw.skip_process_quotes = true;
        for h in &mut out.heredocs {
            if h.expand {
                h.body = raw
                    .process_word(&h.body, &self.vars)
                    .map(Cow::Owned)
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        Ok(())
    }
}

/// Expands one word; the result is owned, so it fits any AST lifetime.
type ExpandWord<'a> = dyn Fn(&str) -> Result<Cow<'static, str>, DockerfileError> + 'a;

fn expand_pairs<'src>(
    pairs: &[KeyValue<'src>],
    word: &ExpandWord,
) -> Result<Vec<KeyValue<'src>>, DockerfileError> {
    pairs
        .iter()
        .map(|p| {
            Ok(KeyValue {
                key: word(&p.key)?,
                value: word(&p.value)?,
                legacy: p.legacy,
            })
        })
        .collect()
}

fn expand_sources<'src>(
    sources: &[Source<'src>],
    word: &ExpandWord,
) -> Result<Vec<Source<'src>>, DockerfileError> {
    sources
        .iter()
        .map(|s| match s {
            Source::Path(p) => Ok(Source::Path(word(p)?)),
            Source::Heredoc(n) => Ok(Source::Heredoc(n.clone())),
        })
        .collect()
}

fn expand_chmod<'src>(
    chmod: Option<&Chmod<'src>>,
    word: &ExpandWord,
    err: &dyn Fn(String) -> DockerfileError,
) -> Result<Option<Chmod<'src>>, DockerfileError> {
    match chmod {
        // Only known to be right or wrong once expanded.
        Some(Chmod::Unexpanded(raw)) => {
            let expanded = word(raw)?;
            flags::parse_chmod(&expanded)
                .map(|c| Some(c.into_owned()))
                .map_err(err)
        }
        other => Ok(other.cloned()),
    }
}

/// Expands every `key=value` of a mount (but `from`, which BuildKit never
/// expands), then checks the result again.
fn expand_mount<'src>(
    mount: &RunMount<'src>,
    word: &ExpandWord,
    err: &dyn Fn(String) -> DockerfileError,
) -> Result<RunMount<'src>, DockerfileError> {
    let fields = flags::split_csv(&mount.spec).map_err(err)?;
    let mut rebuilt = Vec::with_capacity(fields.len());
    for field in fields {
        let field = match field.split_once('=') {
            Some((k, v)) if !k.eq_ignore_ascii_case("from") => format!("{k}={}", word(v)?),
            _ => field.into_owned(),
        };
        if field.contains([',', '"']) {
            rebuilt.push(format!("\"{}\"", field.replace('"', "\"\"")));
        } else {
            rebuilt.push(field);
        }
    }
    let rebuilt = rebuilt.join(",");
    let mut parsed: RunMount<'src> = flags::parse_mount(&rebuilt).map_err(err)?.into_owned();
    parsed.spec = mount.spec.clone();
    Ok(parsed)
}
