//! Switchyard's end-to-end tests: one integration-test binary (the root
//! `Cargo.toml` sets `autotests = false` and declares this file as the one
//! `[[test]]`), so `support/` is compiled and the test binary linked once
//! rather than once per file. Each file beside this one is a module; run one
//! with a name filter, e.g. `cargo test --test tests reload::`.
//!
//! Every test owns its temp dirs and ephemeral ports, so all of them can run
//! in parallel in this one process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod affinity;
mod browser;
mod cli;
mod config_limits;
mod deploy;
mod differential;
mod hardening;
mod image;
mod import_nginx;
mod kubelet_writer;
mod metrics;
mod nagle;
mod proxy;
mod reload;
mod shutdown;
mod upstream_pool;
mod vite;
