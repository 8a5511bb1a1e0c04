//! `syncline`: run a hub from a config file, sync a replica with one, and
//! look inside replica files.
//!
//! ```sh
//! syncline serve --config hub.toml
//! syncline sync quic://127.0.0.1:4433?pin=... --db phone.redb --collection todos
//! syncline inspect --db phone.redb
//! ```
//!
//! Exit codes: 0 success; 1 failure (for `sync`: not caught up; what was
//! committed stays and the next sync resumes there); 2 a usage or
//! configuration error; 3 `sync` caught up but the remote refused some
//! local changes (`syncline inspect` lists them); 4 `verify` found
//! differences.

mod config;
mod dump;
mod inspect;
mod metrics;
mod progress;
mod serve;
mod sync;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Offline-first replication of record collections: run a hub, sync a
/// replica with one, inspect replica files.
#[derive(Debug, Parser)]
#[command(name = "syncline", version, about)]
struct Cli {
    /// How log lines look (the filter comes from `RUST_LOG`, default
    /// `info` for `serve` and `warn` otherwise).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The format of log lines on standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a hub from a TOML config file until SIGTERM or Ctrl-C.
    Serve {
        /// The config file (see `examples/hub.toml`).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Syncs a replica with a hub once: pushes, then pulls until caught up.
    Sync(sync::SyncArgs),
    /// Describes a replica file: id, format, collections, counts, peers,
    /// bytes per table.
    Inspect {
        /// The replica file.
        #[arg(long)]
        db: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Writes a collection's records as JSON lines.
    Dump(dump::DumpArgs),
    /// Writes JSON lines (as `dump` prints them) into a collection, as local
    /// writes in transactions of 1,000.
    Import(dump::ImportArgs),
    /// Recomputes every record from its kept changes and reports any
    /// difference from what is stored.
    Verify {
        /// The replica file.
        #[arg(long)]
        db: PathBuf,
    },
}

/// A failure, with the exit code it maps to.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    /// Exit code 1: the command failed.
    pub(crate) fn failed(message: impl std::fmt::Display) -> Self {
        Self {
            code: 1,
            message: message.to_string(),
        }
    }

    /// Exit code 2: the command line or the config is wrong.
    pub(crate) fn usage(message: impl std::fmt::Display) -> Self {
        Self {
            code: 2,
            message: message.to_string(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    init_logs(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("syncline: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve { config } => serve::run(&config).await,
            Command::Sync(args) => sync::run(args).await,
            Command::Inspect { db, json } => inspect::run(&db, json),
            Command::Dump(args) => dump::dump(args),
            Command::Import(args) => dump::import(args),
            Command::Verify { db } => verify::run(&db),
        }
    });
    // Blocking store work still queued must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("syncline: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Logs to standard error, filtered by `RUST_LOG`.
fn init_logs(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
