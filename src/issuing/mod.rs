//! Issuing: from a participant entering «Сформировать документ» to a certificate in the mailbox and
//! the participant in «Выслан файл» (or «Проблемные», with the reason in the CRM).

mod pipeline;
mod prefetch;
mod prepare;
pub mod triggers;
mod worker;

pub use pipeline::{Completion, Issuer, IssuerConfig};
pub use prefetch::Prefetch;
pub use worker::{ExecutionOutcome, run_poll, run_workers};
