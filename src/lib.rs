//! certportal: issues and verifies event certificates for a Bitrix24-based admissions CRM.

pub mod admin;
pub mod bench;
mod bench_issue;
mod bench_verify;
pub mod bitrix;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod issuing;
pub mod mail;
pub mod metrics;
pub mod render;
pub mod sandbox;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod verify;
pub mod web;
