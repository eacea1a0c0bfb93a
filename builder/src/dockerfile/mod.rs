//! The Dockerfile front end: everything BuildKit's Dockerfile frontend (1.x)
//! does before it starts building, with the same meaning.
//!
//! - [`parse`] reads a Dockerfile into a [`Dockerfile`]: parser directives
//!   (`# syntax=`, `# escape=`, `# check=`), continuations, comments,
//!   heredocs, exec vs shell form, and every instruction of the reference
//!   with typed flags. Errors name file, line, column and instruction. The
//!   AST borrows its words from the source text (see [`ast`]);
//!   `into_owned` detaches it.
//! - [`expand`] is BuildKit's shell-word lexer (`$var`, `${var:-word}`,
//!   `${var#pattern}`, `${var/pattern/repl}`, quotes, escapes).
//! - [`stages`] builds the stage graph (`--target`, `COPY --from`, cycles,
//!   ARG scoping with global and predefined args) and expands instruction
//!   arguments stage by stage.
//! - [`lint`] runs BuildKit's build checks that need no build context,
//!   honouring `# check=skip=…;error=true`.
//! - [`ast_json`] is the JSON form printed by `berth dockerfile parse`.
//!
//! # The JSON AST (`berth dockerfile parse`)
//!
//! ```text
//! {
//!   "file": "Dockerfile",
//!   "escape": "\\",                      // or "`"
//!   "directives": [ {"name": "syntax", "value": "docker/dockerfile:1", "line": 1} ],
//!   "instructions": [ INSTRUCTION, ... ]
//! }
//!
//! INSTRUCTION:
//! {
//!   "keyword": "copy",                    // lower case
//!   "keyword_as_written": "COPY",
//!   "start_line": 7, "start_column": 1, "end_line": 9,   // end includes heredoc bodies
//!   "flags": ["--from=build", "--chown=app"],            // as written, quotes removed
//!   "form": "shell",                      // RUN CMD ENTRYPOINT SHELL HEALTHCHECK COPY ADD VOLUME:
//!                                         //   "exec" (JSON array) or "shell"; absent elsewhere
//!   "arguments": ...,                     // see below
//!   "heredocs": [ {"name": "EOF", "body": "echo hi\n", "expand": true,
//!                  "strip_tabs": false, "fd": null, "body_line": 8} ],
//!   "onbuild": INSTRUCTION                // ONBUILD only: the nested instruction
//! }
//! ```
//!
//! `arguments` is, per keyword:
//! - `env`, `label`: `[{"key": "a", "value": "1", "legacy": false}, ...]`
//!   (`legacy` for the `ENV key value` form);
//! - `arg`: `[{"key": "VERSION", "value": "1.0"}, {"key": "NAME", "value": null}]`;
//! - `run`, `cmd`, `entrypoint`: exec form: the array elements; shell form:
//!   one string, the command line as written;
//! - `healthcheck`: `["NONE"]`, or `["CMD", ...]` followed by the command
//!   as for `cmd`;
//! - `from`: the words (`["golang:1.22", "AS", "build"]`);
//! - `copy`, `add`, `volume`, `expose`, `shell`: the words or array
//!   elements (sources then destination for COPY/ADD; a heredoc source is
//!   written `<<NAME`);
//! - `maintainer`, `user`, `workdir`, `stopsignal`: one string;
//! - `onbuild`: one string, the nested instruction's line.
//!
//! Values are as written: quotes inside ENV values and `$VAR` references are
//! kept, because what they mean depends on the build (see [`stages`]).
//! Heredoc `body` is the text exactly as read (with `strip_tabs` telling the
//! consumer to remove leading tabs); heredocs of an ONBUILD instruction are
//! on the nested instruction.

pub mod ast;
pub mod ast_json;
pub mod error;
pub mod expand;
pub mod flags;
mod heredoc;
mod lexer;
pub mod lint;
mod parser;
mod scan;
pub mod stages;
mod words;

pub use ast::*;
pub use error::{DockerfileError, ErrorKind, Position};
pub use parser::{head, parse, parse_bytes, parse_each};
