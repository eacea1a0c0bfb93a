//! berth-builder owns turning a Dockerfile and a build context into an image:
//! parsing (with source positions), build planning, cache keys, and executing
//! instructions on snapshots. The build engine comes with a later issue; what
//! is here now is the front end that everything after it reads:
//!
//! - [`dockerfile`]: the Dockerfile parser (directives, continuations,
//!   heredocs, every instruction with typed flags), BuildKit's shell-word
//!   expander, the stage graph with ARG scoping, the build checks behind
//!   `berth dockerfile check`, and the JSON form of the AST printed by
//!   `berth dockerfile parse`.
//! - [`dockerignore`]: `.dockerignore` files with the semantics of docker's
//!   patternmatcher, and the choice between `<Dockerfile>.dockerignore` and
//!   `.dockerignore`.
//!
//! Every error names its file, line, column and instruction; no input makes
//! this crate panic, and every matcher runs in time polynomial in its input
//! (patterns are simulated as automata, never backtracked).

pub mod build;
pub mod dockerfile;
pub mod dockerignore;
mod glob;
mod suggest;
