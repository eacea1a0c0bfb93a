//! What a build reports while it runs. The engine emits [`Event`]s; the CLI
//! renders them (a live view on a terminal, BuildKit-style plain lines
//! otherwise). Events come from several stage threads at once.

use std::time::Duration;

/// One thing that happened in a build. `step` numbers are unique per build,
/// in the order steps started.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A step started: `name` is `[stage i/n] INSTRUCTION ...`.
    Started { step: usize, name: &'a str },
    /// A step was found in the cache.
    Cached { step: usize },
    /// Output the step's process wrote.
    Output { step: usize, data: &'a [u8] },
    /// A step finished.
    Done { step: usize, elapsed: Duration },
    /// A step failed; the error comes back from `build` itself.
    Failed { step: usize, elapsed: Duration },
    /// Something the user should know that is not a step (exporting, tags).
    Note { message: &'a str },
}

/// Where a build's events go.
pub trait Progress: Sync {
    fn event(&self, event: Event<'_>);
}

/// Drops every event.
pub struct Quiet;

impl Progress for Quiet {
    fn event(&self, _event: Event<'_>) {}
}
