//! Integration tests: one binary, one module per area.

mod admin;
mod browser;
mod helpers;
mod issuing;
mod photos;
mod render;
mod store;
mod triggers;
mod verify;
