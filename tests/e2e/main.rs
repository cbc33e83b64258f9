//! End-to-end tests: the real `ballast` binary, and the real Docker engine
//! where Docker is involved. One binary so that all tests share one
//! private engine (see `harness`).

mod admin_actions;
mod admin_fidelity;
mod admin_host_paths;
mod admin_pools;
mod admin_rest;
mod admin_schemas;
mod backup;
mod backup_faults;
mod backup_live;
mod backup_pools;
mod browser;
mod btrfs;
mod cli;
mod cli_install;
mod cluster;
mod compose_examples;
mod config_file;
mod crash;
mod deb_package;
mod diskfull;
mod docker;
mod engine;
mod escapes;
mod exposed;
mod harness;
mod hostile_net;
mod hosts;
mod inputs;
mod load;
mod loopback;
mod managed_cluster;
mod managed_plugin;
mod moves;
mod protocol;
mod races;
mod rancher_client;
mod rancher_seeds;
mod readme_tour;
mod socket_activation;
mod two_hosts;
