//! Errors of the Dockerfile front end. Each one knows the file, the
//! 1-based line and column it points at, and (when there is one) the
//! instruction, and renders as `Dockerfile:7:12: message`.

use std::fmt;

use thiserror::Error;

/// A place in the source: 1-based line and column (columns count chars).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    pub fn new(line: usize, column: usize) -> Self {
        Position { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Any error the front end reports: where, and what.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{file}:{}:{}: {kind}", position.line, position.column)]
pub struct DockerfileError {
    /// The name the file is reported under (e.g. `Dockerfile`).
    pub file: String,
    pub position: Position,
    /// The instruction keyword in upper case, when the error is about one.
    pub instruction: Option<String>,
    /// Boxed to keep `Result<_, DockerfileError>` small on the hot path.
    pub kind: Box<ErrorKind>,
}

impl DockerfileError {
    pub fn new(file: &str, position: Position, instruction: Option<&str>, kind: ErrorKind) -> Self {
        DockerfileError {
            file: file.to_string(),
            position,
            instruction: instruction.map(str::to_ascii_uppercase),
            kind: Box::new(kind),
        }
    }
}

fn did_you_mean(suggestion: &Option<String>, prefix: &str) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {prefix}{s}?)"),
        None => String::new(),
    }
}

/// What went wrong. Messages follow BuildKit's where BuildKit has one, and
/// always name the instruction they are about.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ErrorKind {
    #[error("file with no instructions")]
    NoInstructions,
    #[error("dockerfile contains no stages to build")]
    NoStages,
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscapeToken(String),
    #[error("invalid check directive: {0}")]
    InvalidCheckDirective(String),
    #[error("unknown instruction: {name}{}", did_you_mean(suggestion, ""))]
    UnknownInstruction {
        name: String,
        suggestion: Option<String>,
    },
    #[error("{instruction} must come after FROM: no build stage in current context")]
    NoBuildStage { instruction: String },
    #[error(
        "unknown flag --{flag} for {instruction}{}",
        did_you_mean(suggestion, "--")
    )]
    UnknownFlag {
        instruction: String,
        flag: String,
        suggestion: Option<String>,
    },
    #[error("flag --{flag} given twice for {instruction}")]
    DuplicateFlag { instruction: String, flag: String },
    #[error("flag --{flag} for {instruction} needs a value")]
    MissingFlagValue { instruction: String, flag: String },
    #[error("flag {flag} for {instruction} should start with --")]
    MalformedFlag { instruction: String, flag: String },
    #[error("invalid value {value:?} for --{flag} of {instruction}: {reason}")]
    InvalidFlagValue {
        instruction: String,
        flag: String,
        value: String,
        reason: String,
    },
    /// Wrong number or shape of arguments; the message names the instruction.
    #[error("{0}")]
    Arguments(String),
    #[error(
        "{instruction}: when using JSON array syntax, arrays must be comprised of strings only"
    )]
    JsonNotStrings { instruction: String },
    #[error("{instruction}: unterminated heredoc {name:?}")]
    UnterminatedHeredoc { instruction: String, name: String },
    #[error("{instruction}: {message}")]
    Expansion {
        instruction: String,
        message: String,
    },
    #[error("{0}")]
    Stage(String),
}
