//! Parses the command line, runs the command, and maps the outcome to the documented exit code.
//! The only place that exits.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

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
    let stopped_by = Arc::new(AtomicU8::new(0));
    runtime.spawn(watch_signals(cancel.clone(), stopped_by.clone()));
    let code = runtime.block_on(app::run(cli, cancel));
    // An interrupted run says which signal stopped it: 130 (SIGINT), 143 (SIGTERM), 129
    // (SIGHUP), as shells and schedulers expect.
    let by_signal = |code: u8| match stopped_by.load(Ordering::SeqCst) {
        0 => code,
        signal_code if code == app::exit::INTERRUPTED => signal_code,
        _ => code,
    };
    match code {
        Ok(code) => ExitCode::from(by_signal(code)),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Ctrl-C (SIGINT), SIGTERM (schedulers stopping a job) and SIGHUP (a closed terminal) stop
/// the run the same way: no new work, calls in flight finish and are journaled, the run is
/// `interrupted`. A second signal quits at once: every intent was committed before its call.
async fn watch_signals(cancel: Cancel, stopped_by: Arc<AtomicU8>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    let mut next = async || -> (&'static str, u8) {
        tokio::select! {
            _ = int.recv() => ("Ctrl-C", app::exit::INTERRUPTED),
            _ = term.recv() => ("SIGTERM", app::exit::TERMINATED),
            _ = hup.recv() => ("SIGHUP", app::exit::HANGUP),
        }
    };
    let (name, code) = next().await;
    stopped_by.store(code, Ordering::SeqCst);
    cancel.cancel();
    eprintln!(
        "\nstopping ({name}): no new work is started; calls in flight finish and are journaled (a second signal quits at once)"
    );
    let _ = next().await;
    eprintln!("quitting now; `iamsweep resume` reconciles what was in flight");
    std::process::exit(i32::from(code));
}
