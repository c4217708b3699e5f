//! Integration tests: one binary, one module per area.

mod access;
mod admin;
mod browser;
mod bulk;
mod cli;
mod helpers;
mod instances;
mod issuing;
mod limits;
mod photos;
mod render;
mod store;
mod triggers;
mod verify;
