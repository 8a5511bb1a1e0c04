//! The hub's config file (TOML). `examples/hub.toml` shows every key.
//!
//! Paths are relative to the config file's directory. Every value is
//! checked while parsing, so a mistake is reported with the file, the line
//! and the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use syncline::{
    Collections, History, MergePolicy, Permissions, Scope, ServerConfig, Tokens, transport::Limits,
};

/// A hub's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HubConfig {
    /// The replica file.
    pub(crate) database: PathBuf,
    /// Where to listen.
    pub(crate) listen: Listen,
    /// TLS for QUIC and HTTPS: PEM files, or a development identity.
    #[serde(default)]
    pub(crate) tls: Tls,
    /// The tokens callers present, each with its permissions; none: every
    /// caller may read and write everything (development only).
    #[serde(default, rename = "token")]
    pub(crate) tokens: Vec<TokenConfig>,
    /// The collections the hub defines and serves.
    #[serde(default, rename = "collection")]
    pub(crate) collections: Vec<CollectionEntry>,
    /// Limits on what the hub accepts and sends.
    #[serde(default)]
    pub(crate) limits: LimitsConfig,
    /// The sync server's settings.
    #[serde(default)]
    pub(crate) server: ServerSection,
}

/// The `[listen]` table: at least one listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Listen {
    /// QUIC (UDP).
    pub(crate) quic: Option<SocketAddr>,
    /// Plain HTTP; also serves `/health` and `/metrics`.
    pub(crate) http: Option<SocketAddr>,
    /// HTTPS; also serves `/health` and `/metrics`.
    pub(crate) https: Option<SocketAddr>,
    /// A listener for `/metrics` alone (when no HTTP listener serves it).
    pub(crate) metrics: Option<SocketAddr>,
}

/// The `[tls]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Tls {
    /// The certificate chain, PEM.
    pub(crate) cert: Option<PathBuf>,
    /// The private key, PEM (PKCS#8).
    pub(crate) key: Option<PathBuf>,
    /// The names a development identity's certificate carries (default
    /// `localhost`); ignored with `cert` and `key`.
    #[serde(default)]
    pub(crate) names: Vec<String>,
}

/// A `[[token]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenConfig {
    /// The secret, written here...
    pub(crate) token: Option<String>,
    /// ...or read from this environment variable at start.
    pub(crate) token_env: Option<String>,
    /// Who the token names, in logs and to validators.
    pub(crate) principal: String,
    /// Collections it may pull: names, or `["*"]` for all. Default none.
    #[serde(default)]
    pub(crate) read: Vec<String>,
    /// Collections it may push to: names, or `["*"]` for all. Default none.
    #[serde(default)]
    pub(crate) write: Vec<String>,
    /// Parts of collections it may pull: collection -> key prefixes
    /// (`{ notes = ["ws/42/"] }`), beside the whole collections of `read`.
    #[serde(default)]
    pub(crate) read_prefixes: std::collections::BTreeMap<String, Vec<String>>,
    /// Parts of collections it may push to, as `read_prefixes`.
    #[serde(default)]
    pub(crate) write_prefixes: std::collections::BTreeMap<String, Vec<String>>,
}

/// A `[[collection]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CollectionEntry {
    /// Its name.
    pub(crate) name: String,
    /// How its records merge; default `lww`.
    #[serde(default)]
    pub(crate) policy: PolicyName,
    /// Which superseded changes the hub keeps: `"merge"` (default), a
    /// count (`10`) or a duration (`"7d"`).
    #[serde(default, deserialize_with = "history")]
    pub(crate) history: History,
}

/// The merge policies a config can name.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PolicyName {
    /// Last writer wins, per record.
    #[default]
    Lww,
    /// Last writer wins, per field of map values.
    FieldLww,
    /// Automerge documents.
    Automerge,
}

impl PolicyName {
    pub(crate) fn policy(self) -> MergePolicy {
        match self {
            Self::Lww => MergePolicy::Lww,
            Self::FieldLww => MergePolicy::FieldLww,
            Self::Automerge => MergePolicy::Automerge,
        }
    }
}

/// The `[limits]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsConfig {
    /// The largest frame a transport receives or sends, in bytes.
    pub(crate) max_frame_bytes: Option<usize>,
    /// The most changes one pull answer carries.
    pub(crate) max_pull_changes: Option<usize>,
    /// About the most bytes of changes one pull answer carries.
    pub(crate) max_pull_bytes: Option<usize>,
}

/// The `[server]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerSection {
    /// How often an idle subscription hears from the hub (`"15s"`), or
    /// `"off"`.
    #[serde(default, deserialize_with = "optional_duration")]
    pub(crate) heartbeat: Option<Option<Duration>>,
    /// How long tombstones live (`"30d"`), or `"off"`.
    #[serde(default, deserialize_with = "optional_duration")]
    pub(crate) tombstone_horizon: Option<Option<Duration>>,
    /// How long a drain at shutdown may take (`"10s"`).
    #[serde(default, deserialize_with = "duration")]
    pub(crate) shutdown_grace: Option<Duration>,
}

impl HubConfig {
    /// Reads and checks the config at `path`; paths in it become relative
    /// to its directory.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut config: HubConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.database = base.join(&config.database);
        config.tls.cert = config.tls.cert.map(|p| base.join(p));
        config.tls.key = config.tls.key.map(|p| base.join(p));
        config.check(path, &text)?;
        Ok(config)
    }

    /// The checks that span keys.
    fn check(&self, path: &Path, text: &str) -> Result<(), String> {
        let at = |key: &str| {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with(key))
                .map_or(String::new(), |n| format!(", line {}", n + 1));
            format!("{}{line}", path.display())
        };
        let l = &self.listen;
        if l.quic.is_none() && l.http.is_none() && l.https.is_none() {
            return Err(format!(
                "{}: [listen] needs at least one of quic, http or https",
                at("[listen]")
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(format!(
                "{}: [tls] needs both cert and key, or neither (a development identity)",
                at("[tls]")
            ));
        }
        for (i, token) in self.tokens.iter().enumerate() {
            if token.token.is_some() == token.token_env.is_some() {
                return Err(format!(
                    "{}: [[token]] number {} (principal {:?}) needs exactly one of token or token_env",
                    at("[[token]]"),
                    i + 1,
                    token.principal
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for c in &self.collections {
            if !names.insert(&c.name) {
                return Err(format!(
                    "{}: collection {:?} is defined twice",
                    at("[[collection]]"),
                    c.name
                ));
            }
        }
        if self.collections.is_empty() {
            return Err(format!(
                "{}: define at least one [[collection]] to serve",
                path.display()
            ));
        }
        Ok(())
    }

    /// The access control: the tokens, or `None` when there are none.
    pub(crate) fn access(&self) -> Result<Option<Tokens>, String> {
        if self.tokens.is_empty() {
            return Ok(None);
        }
        let mut tokens = Tokens::new();
        for t in &self.tokens {
            let secret = match (&t.token, &t.token_env) {
                (Some(secret), _) => secret.clone(),
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    format!(
                        "token of principal {:?}: environment variable {var} is not set",
                        t.principal
                    )
                })?,
                (None, None) => unreachable!("checked on load"),
            };
            tokens = tokens.with_token(
                secret,
                t.principal.clone(),
                Permissions {
                    read: collections(&t.read, &t.read_prefixes),
                    write: collections(&t.write, &t.write_prefixes),
                },
            );
        }
        Ok(Some(tokens))
    }

    /// The transport limits.
    pub(crate) fn limits(&self) -> Limits {
        match self.limits.max_frame_bytes {
            Some(max) => Limits::new().with_max_frame_len(max),
            None => Limits::new(),
        }
    }

    /// The sync server's settings.
    pub(crate) fn server(&self) -> ServerConfig {
        let mut config = ServerConfig::default();
        if let Some(n) = self.limits.max_pull_changes {
            config.max_pull_changes = n;
        }
        if let Some(n) = self.limits.max_pull_bytes {
            config.max_pull_bytes = n;
        }
        if let Some(heartbeat) = self.server.heartbeat {
            config.heartbeat = heartbeat;
        }
        if let Some(horizon) = self.server.tombstone_horizon {
            config.tombstone_horizon = horizon;
        }
        config
    }
}

fn collections(
    names: &[String],
    prefixes: &std::collections::BTreeMap<String, Vec<String>>,
) -> Collections {
    if names.iter().any(|n| n == "*") {
        Collections::All
    } else if prefixes.is_empty() {
        Collections::only(names.iter().cloned())
    } else {
        let whole = names.iter().map(Scope::collection);
        let parts = prefixes.iter().flat_map(|(collection, prefixes)| {
            prefixes
                .iter()
                .map(move |p| Scope::prefix(collection.clone(), p.as_str()))
        });
        Collections::scopes(whole.chain(parts))
    }
}

/// A duration: `"250ms"`, `"15s"`, `"5m"`, `"2h"`, `"30d"`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (ms, s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let seconds = |per: u64| {
        n.checked_mul(per)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{text:?} is too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86_400),
        _ => Err(format!(
            "{text:?}: unknown unit {unit:?} (ms, s, m, h or d)"
        )),
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn optional_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<Duration>>, D::Error> {
    let text = String::deserialize(d)?;
    if text == "off" {
        return Ok(Some(None));
    }
    parse_duration(&text)
        .map(|d| Some(Some(d)))
        .map_err(serde::de::Error::custom)
}

fn history<'de, D: Deserializer<'de>>(d: D) -> Result<History, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Count(u32),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Count(n) => Ok(History::Last(n)),
        Raw::Text(t) if t == "merge" => Ok(History::Merge),
        Raw::Text(t) => parse_duration(&t).map(History::For).map_err(|e| {
            serde::de::Error::custom(format!("history is \"merge\", a count or a duration: {e}"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<HubConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, text).unwrap();
        HubConfig::load(&path)
    }

    #[test]
    fn the_example_config_loads() {
        let text = include_str!("../../examples/hub.toml");
        let config = load(text).unwrap();
        assert!(config.listen.quic.is_some() && config.listen.http.is_some());
        assert_eq!(config.collections.len(), 2);
        assert!(config.access().unwrap().is_some());
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_key() {
        let e = load(
            "database = \"hub.redb\"\n[listen]\nhttp = \"127.0.0.1:0\"\n\n[[collection]]\nname = \"todos\"\npolicy = \"lwww\"\n",
        )
        .unwrap_err();
        assert!(e.contains("hub.toml"), "{e}");
        assert!(e.contains("line 7"), "{e}");
        assert!(e.contains("policy") || e.contains("lwww"), "{e}");

        let e = load("database = \"hub.redb\"\n[listen]\nhttp = \"127.0.0.1:0\"\nhtp = 1\n")
            .unwrap_err();
        assert!(e.contains("line 4") && e.contains("htp"), "{e}");

        let e = load("database = \"hub.redb\"\n[listen]\nhttp = \"nowhere\"\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");

        let e = load(
            "database = \"hub.redb\"\n[listen]\nhttp = \"127.0.0.1:0\"\n[server]\nheartbeat = \"15 parsecs\"\n[[collection]]\nname = \"a\"\n",
        )
        .unwrap_err();
        assert!(e.contains("line 5") && e.contains("heartbeat"), "{e}");

        let e =
            load("database = \"hub.redb\"\n[listen]\n[[collection]]\nname = \"a\"\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("at least one"), "{e}");
    }

    #[test]
    fn tokens_grant_whole_collections_and_key_prefixes() {
        let config = load(
            "database = \"hub.redb\"\n[listen]\nhttp = \"127.0.0.1:0\"\n[[collection]]\nname = \"notes\"\n[[collection]]\nname = \"profiles\"\n[[token]]\nprincipal = \"ws42\"\ntoken = \"s\"\nread = [\"profiles\"]\nread_prefixes = { notes = [\"ws/42/\"] }\nwrite_prefixes = { notes = [\"ws/42/\"] }\n",
        )
        .unwrap();
        let t = &config.tokens[0];
        assert_eq!(
            collections(&t.read, &t.read_prefixes),
            Collections::scopes([
                Scope::collection("profiles"),
                Scope::prefix("notes", "ws/42/")
            ])
        );
        assert_eq!(
            collections(&t.write, &t.write_prefixes),
            Collections::scopes([Scope::prefix("notes", "ws/42/")])
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
