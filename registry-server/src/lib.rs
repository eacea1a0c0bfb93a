//! berth-registry-server owns the OCI Distribution API over HTTP(S), its storage
//! drivers, auth, garbage collection and configuration. It is filled in by the
//! registry-server issue.
