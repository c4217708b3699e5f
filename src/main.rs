#[tokio::main]
async fn main() -> std::process::ExitCode {
    certportal::cli::run().await
}
