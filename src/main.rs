//! Parses the command line, runs the command, and maps the outcome to the documented exit code.
//! The only place that exits.

use std::process::ExitCode;

use clap::Parser;
use iamsweep::app;
use iamsweep::cancel::Cancel;
use iamsweep::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IAMSWEEP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(app::exit::USAGE);
        }
    };
    let cancel = Cancel::new();
    let on_signal = cancel.clone();
    runtime.spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        on_signal.cancel();
        eprintln!(
            "\nstopping: no new work is started; calls in flight finish and are journaled (Ctrl-C again to quit at once)"
        );
        if tokio::signal::ctrl_c().await.is_ok() {
            // The journal stays consistent: every intent was committed before its call.
            eprintln!("quitting now; `iamsweep resume` reconciles what was in flight");
            std::process::exit(i32::from(app::exit::INTERRUPTED));
        }
    });
    match runtime.block_on(app::run(cli, cancel)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
