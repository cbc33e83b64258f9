//! End-to-end tests: the real `ballast` binary, and the real Docker engine
//! where Docker is involved. One binary so that all tests share one
//! private engine (see `harness`).

mod admin;
mod backup;
mod backup_faults;
mod backup_pools;
mod browser;
mod btrfs;
mod cli;
mod crash;
mod diskfull;
mod docker;
mod engine;
mod escapes;
mod harness;
mod hostile_net;
mod inputs;
mod load;
mod loopback;
mod protocol;
mod races;
