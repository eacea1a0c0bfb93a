//! berth-builder owns turning a Dockerfile and a build context into an image:
//! parsing (with source positions), build planning, cache keys, and executing
//! instructions on snapshots. It is filled in by the Dockerfile and build-engine
//! issues; for now it only reserves its place in the workspace map.
