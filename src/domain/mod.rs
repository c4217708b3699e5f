//! Parsed, always-valid domain values. Everything from outside (CRM fields, URLs, forms) is turned
//! into one of these at the edge, so the rest of the code never re-checks it.

mod certificate_code;
mod email;
mod points;

pub use certificate_code::{CertificateCode, CodeError};
pub use email::{RecipientEmail, pick_last_added};
pub use points::{Points, PointsError, points_word};
