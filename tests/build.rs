//! End-to-end tests: placeholder until the feature lands.
