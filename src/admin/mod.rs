//! The staff console: sign-in, the certificate registry, details and actions, the queue.

pub mod auth;
mod details;
mod queue;
mod registry;

use actix_web::web;

pub(crate) use crate::web::html;
pub use auth::LoginThrottle;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin", web::get().to(registry::home))
        .route("/admin/", web::get().to(registry::home))
        .route("/admin/login", web::get().to(auth::login_form))
        .route("/admin/login", web::post().to(auth::login))
        .route("/admin/logout", web::post().to(auth::logout))
        .route("/admin/certificates", web::get().to(registry::list))
        .route("/admin/certificates.csv", web::get().to(registry::csv))
        .route("/admin/certificates/{number}", web::get().to(details::show))
        .route(
            "/admin/certificates/{number}/qr.png",
            web::get().to(details::qr),
        )
        .route(
            "/admin/certificates/{number}/certificate.pdf",
            web::get().to(details::pdf),
        )
        .route(
            "/admin/certificates/{number}/{action}",
            web::post().to(details::act),
        )
        .route("/admin/queue", web::get().to(queue::show))
        .route("/admin/queue/{id}/retry", web::post().to(queue::retry));
}
