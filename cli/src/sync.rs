//! `syncline sync URL --db FILE`: one sync with a hub, then exit. The exit
//! code says whether it caught up: 0 yes, 3 yes but the hub refused some
//! local changes, 1 no (what was committed stays; the next sync resumes).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use syncline::{
    CollectionConfig, ConnectConfig, MergePolicy, Replica, ReplicaConfig, Scope, SyncConfig,
    SyncEngine, SyncEvent,
};
use tokio::sync::broadcast::error::RecvError;

use crate::Failure;
use crate::config::parse_duration;
use crate::progress::{Mode, Progress};

/// The arguments of `syncline sync`.
#[derive(Debug, clap::Args)]
pub(crate) struct SyncArgs {
    /// The hub: `quic://HOST:PORT?pin=FINGERPRINT`, `http://HOST:PORT`,
    /// `https://HOST:PORT[?pin=FINGERPRINT]`.
    pub(crate) url: String,
    /// The replica file (created if missing).
    #[arg(long)]
    pub(crate) db: PathBuf,
    /// A collection to sync, defined here if missing: `NAME` or
    /// `NAME:POLICY` (lww, field-lww, automerge). Repeatable; without it,
    /// the replica's synced collections.
    #[arg(long = "collection", value_name = "NAME[:POLICY]")]
    pub(crate) collections: Vec<String>,
    /// Sync only part of a collection: `COLLECTION=PREFIX` (the records
    /// whose key starts with PREFIX), or `COLLECTION` whole. Repeatable;
    /// without it, the synced collections whole. Each scope keeps its own
    /// cursor; a scope no longer asked for is dropped from the file.
    #[arg(long = "scope", value_name = "COLLECTION[=PREFIX]")]
    pub(crate) scopes: Vec<String>,
    /// The token the hub wants.
    #[arg(long, env = "SYNCLINE_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// How progress is shown (on standard error).
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub(crate) progress: Mode,
    /// Gives up after this long (`30s`, `5m`); default never.
    #[arg(long, value_parser = parse_duration)]
    pub(crate) timeout: Option<Duration>,
}

/// Runs one sync.
pub(crate) async fn run(args: SyncArgs) -> Result<u8, Failure> {
    let connector = syncline::connect(&args.url, &ConnectConfig::new()).map_err(Failure::usage)?;
    let replica = Replica::open(&args.db, ReplicaConfig::default())
        .map_err(|e| Failure::failed(format!("cannot open {}: {e}", args.db.display())))?;
    for spec in &args.collections {
        let (name, policy) = parse_collection(spec)?;
        let existing = replica.collections().into_iter().find(|(n, _)| *n == name);
        match existing {
            // An existing collection keeps its policy unless one was named.
            Some((_, config)) if policy.is_none() || Some(&config.policy) == policy.as_ref() => {}
            _ => {
                let config = CollectionConfig::default().with_policy(policy.unwrap_or_default());
                replica
                    .define_collection(name, config)
                    .map_err(|e| Failure::usage(format!("collection {name:?}: {e}")))?;
            }
        }
    }
    if !replica.collections().iter().any(|(_, c)| c.sync) {
        return Err(Failure::usage(format!(
            "{} has no synced collection: name one with --collection",
            args.db.display()
        )));
    }

    let scopes: Vec<Scope> = args
        .scopes
        .iter()
        .map(|s| match s.split_once('=') {
            Some((collection, prefix)) => Scope::prefix(collection, prefix),
            None => Scope::collection(s.as_str()),
        })
        .collect();
    if let Some(scope) = scopes.iter().find(|s| {
        !replica
            .collections()
            .iter()
            .any(|(n, c)| *n == s.collection && c.sync)
    }) {
        return Err(Failure::usage(format!(
            "--scope {scope}: no synced collection {:?} in {} (add --collection {})",
            scope.collection,
            args.db.display(),
            scope.collection
        )));
    }
    let config = SyncConfig {
        on_demand: true,
        token: args.token.clone(),
        scopes,
        ..SyncConfig::default()
    };
    let engine = SyncEngine::start(replica.clone(), connector, config);
    let mut events = engine.events();
    let mut progress = Progress::new(args.progress);
    let mut rejected = 0usize;
    let outcome = {
        let round = engine.sync_now();
        tokio::pin!(round);
        let deadline = async {
            match args.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                result = &mut round => break Some(result),
                () = &mut deadline => break None,
                event = events.recv() => {
                    progress.head(engine.stats().remote_lsn);
                    match event {
                        Ok(SyncEvent::Pulled { count, through }) => {
                            progress.pulled(count, through, Instant::now());
                        }
                        Ok(SyncEvent::Pushed { count, .. }) => progress.pushed(count),
                        Ok(SyncEvent::Rejected { group, code, reason }) => {
                            rejected += 1;
                            tracing::warn!(group, %code, reason, "the hub refused local changes");
                        }
                        Ok(SyncEvent::ScopeRefused { scope, code, reason }) => {
                            eprintln!("the hub refused {scope} ({code}): {reason}");
                        }
                        Ok(SyncEvent::ScopeDropped { scope, dropped }) => {
                            eprintln!("dropped {dropped} record(s) of {scope} from the file");
                        }
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => {}
                    }
                }
            }
        }
    };
    let stats = engine.stats();
    engine.stop().await;
    let closed = replica.close();
    let (line, code) = match outcome {
        Some(Ok(report)) if rejected == 0 => (
            format!(
                "caught up: pushed {}, pulled {}",
                report.pushed, report.pulled
            ),
            0,
        ),
        Some(Ok(report)) => (
            format!(
                "caught up: pushed {}, pulled {}; the hub refused {rejected} transaction(s) \
                 (syncline inspect lists them)",
                report.pushed, report.pulled
            ),
            3,
        ),
        Some(Err(e)) => (
            format!(
                "not caught up: {e} (pushed {}, pulled {} before it; the next sync resumes there)",
                stats.pushed, stats.pulled
            ),
            1,
        ),
        None => (
            format!(
                "not caught up: gave up after {:?} (pushed {}, pulled {}; the next sync resumes there)",
                args.timeout.unwrap_or_default(),
                stats.pushed,
                stats.pulled
            ),
            1,
        ),
    };
    progress.finish();
    if code == 1 {
        return Err(Failure::failed(line));
    }
    println!("{line}");
    closed.map_err(|e| Failure::failed(format!("closing {}: {e}", args.db.display())))?;
    Ok(code)
}

/// `NAME` or `NAME:POLICY`.
fn parse_collection(spec: &str) -> Result<(&str, Option<MergePolicy>), Failure> {
    let (name, policy) = match spec.split_once(':') {
        Some((name, policy)) => (name, Some(policy)),
        None => (spec, None),
    };
    let policy = match policy {
        None => None,
        Some("lww") => Some(MergePolicy::Lww),
        Some("field-lww") => Some(MergePolicy::FieldLww),
        Some("automerge") => Some(MergePolicy::Automerge),
        Some(other) => {
            return Err(Failure::usage(format!(
                "--collection {spec}: unknown policy {other:?} (lww, field-lww or automerge)"
            )));
        }
    };
    Ok((name, policy))
}
