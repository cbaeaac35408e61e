//! Workspace root package: owns the top-level examples, benches and tests.
