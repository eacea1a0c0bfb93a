//! berth-registry-client owns talking to registries: auth challenges, tokens,
//! credentials, and pull/push with concurrency, resume, retries and progress.
//! It is filled in by the registry-client issue.
