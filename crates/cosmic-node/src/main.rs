//! `cosmic-node`: run a CosmicSyncCore node, or talk to one.
//!
//! Data goes to stdout, logs and errors to stderr. Exit codes: 0 success, 1 failure,
//! 2 bad usage or configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use cosmic_config::{LoadOptions, Loaded, Overrides};
use cosmic_node::{DataDir, Node};

mod client;
mod identity;

/// A peer-to-peer, local-first sync node: live documents and content-addressed files.
#[derive(Debug, Parser)]
#[command(name = "cosmic-node", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Data dir of the node [default: the platform data dir, e.g. ~/.local/share/cosmic]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Extra configuration file, above the data dir's cosmic.toml and below COSMIC_* vars
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr [default: from `log.format`, pretty]
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a data dir: node key, commented cosmic.toml and API token
    Init,
    /// Start the node and run until SIGINT or SIGTERM
    Run(RunArgs),
    /// Inspect the configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage author identities (passphrase from a prompt or COSMIC_PASSPHRASE)
    #[command(subcommand)]
    Identity(identity::IdentityCommand),
    /// Spaces of a running node: create, list, join, leave, grant, revoke
    Space {
        #[command(flatten)]
        conn: client::ConnArgs,
        #[command(subcommand)]
        command: client::SpaceCommand,
    },
    /// Documents of a running node: put, get, rm, ls, watch
    Doc {
        #[command(flatten)]
        conn: client::ConnArgs,
        #[command(subcommand)]
        command: client::DocCommand,
    },
    /// Files of a running node: add, get, rm
    Blob {
        #[command(flatten)]
        conn: client::ConnArgs,
        #[command(subcommand)]
        command: client::BlobCommand,
    },
    /// Peers of a running node, or dial one
    Peers {
        #[command(flatten)]
        conn: client::ConnArgs,
        #[command(subcommand)]
        command: Option<client::PeersCommand>,
    },
    /// Status of a running node
    Status {
        #[command(flatten)]
        conn: client::ConnArgs,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Multiaddr to listen on for peers (repeatable) [config: net.listen]
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Address of the HTTP API [config: api.addr, default 127.0.0.1:7878]
    #[arg(long, value_name = "ADDR")]
    api: Option<String>,
    /// Peer to connect to at start, with its /p2p/ id (repeatable) [config: net.bootstrap]
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// Do not discover peers on the local network [config: net.mdns = false]
    #[arg(long)]
    no_mdns: bool,
    /// Unlock this keystore identity, so that API writes may be signed by it with
    /// `?author=ALIAS` (repeatable; passphrase from COSMIC_PASSPHRASE or a prompt)
    #[arg(long, value_name = "ALIAS")]
    identity: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration and where each value came from
    Show {
        /// Print JSON instead of annotated TOML-like lines
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // Every file this process makes (the stores', the keys', the state's) is private,
    // whatever umask it was started with.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    cosmic_node::install_crypto_provider();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            for hint in failure.hints {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(failure.code)
        }
    }
}

/// An error on its way out of `main`, with its exit code and hints for the user.
struct Failure {
    error: anyhow::Error,
    code: u8,
    hints: Vec<String>,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self { error, code: 1, hints: Vec::new() }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let mut overrides = Overrides::default();
    if let Some(data_dir) = &cli.global.data_dir {
        overrides = overrides.set("node.data_dir", data_dir, "--data-dir").map_err(usage)?;
    }
    if let Some(format) = cli.global.log_format {
        let format = match format {
            LogFormatArg::Pretty => "pretty",
            LogFormatArg::Json => "json",
        };
        overrides = overrides.set("log.format", format, "--log-format").map_err(usage)?;
    }
    if let Command::Run(args) = &cli.command {
        if !args.listen.is_empty() {
            overrides = overrides.set("net.listen", &args.listen, "--listen").map_err(usage)?;
        }
        if let Some(api) = &args.api {
            overrides = overrides.set("api.addr", api, "--api").map_err(usage)?;
        }
        if !args.bootstrap.is_empty() {
            overrides =
                overrides.set("net.bootstrap", &args.bootstrap, "--bootstrap").map_err(usage)?;
        }
        if args.no_mdns {
            overrides = overrides.set("net.mdns", false, "--no-mdns").map_err(usage)?;
        }
    }
    let options =
        LoadOptions { config_file: cli.global.config.clone(), overrides, ..Default::default() };
    let loaded = cosmic_config::load(&options).map_err(usage)?;

    match cli.command {
        Command::Init => init(&loaded),
        Command::Run(args) => run_node(loaded, &args.identity),
        Command::Config(ConfigCommand::Show { json }) => config_show(&loaded, json),
        Command::Identity(command) => {
            identity::run(&loaded.config.node.data_dir, command).map_err(Failure::from)
        }
        Command::Space { conn, command } => {
            run_client(&loaded, &conn, |client| Box::pin(client::run_space(client, command)))
        }
        Command::Doc { conn, command } => {
            run_client(&loaded, &conn, |client| Box::pin(client::run_doc(client, command)))
        }
        Command::Blob { conn, command } => {
            run_client(&loaded, &conn, |client| Box::pin(client::run_blob(client, command)))
        }
        Command::Peers { conn, command } => {
            run_client(&loaded, &conn, |client| Box::pin(client::run_peers(client, command)))
        }
        Command::Status { conn } => {
            run_client(&loaded, &conn, |client| Box::pin(client::run_status(client)))
        }
    }
}

/// Runs one client subcommand against a running node's API on a small runtime.
fn run_client(
    loaded: &Loaded,
    conn: &client::ConnArgs,
    command: impl for<'a> FnOnce(
        &'a client::Client,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>,
    >,
) -> Result<(), Failure> {
    let client = client::Client::connect(loaded, conn).map_err(usage)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(command(&client)).map_err(Failure::from)
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure { error: error.into(), code: 2, hints: Vec::new() }
}

fn init(loaded: &Loaded) -> Result<(), Failure> {
    let path = &loaded.config.node.data_dir;
    let data_dir = DataDir::lock(path).map_err(in_use)?;
    data_dir.make_private().context("making the data dir private")?;
    if data_dir.is_initialized() {
        return Err(Failure {
            error: cosmic_node::Error::AlreadyInitialized { path: path.clone() }.into(),
            code: 1,
            hints: vec!["`cosmic-node run` uses an existing data dir as it is".to_owned()],
        });
    }
    let report = data_dir.init().context("initializing the data dir")?;
    let node_key = data_dir.node_key().context("loading the new node key")?;
    output::line(&format!("initialized {}", path.display()));
    output::line(&format!("peer_id {}", node_key.peer_id()));
    for file in report.created {
        output::line(&format!("created {}", path.join(file).display()));
    }
    Ok(())
}

fn in_use(error: cosmic_node::Error) -> Failure {
    let hints = match &error {
        cosmic_node::Error::DataDirInUse { .. } => {
            vec!["stop the other node first, or give this one its own --data-dir".to_owned()]
        }
        cosmic_node::Error::Store(cosmic_store::Error::Corrupted { path, .. }) => vec![format!(
            "move {} aside (or restore it from a backup) and start again: the node \
             resyncs its spaces from its peers",
            path.display()
        )],
        cosmic_node::Error::Store(error) if error.is_disk_full() => {
            vec!["free some space on the data dir's disk and start again".to_owned()]
        }
        _ => Vec::new(),
    };
    Failure { error: error.into(), code: 1, hints }
}

fn run_node(loaded: Loaded, identities: &[String]) -> Result<(), Failure> {
    logging::install(&loaded.config.log).map_err(usage)?;
    // Before anything starts: a wrong passphrase must not leave a half-started node.
    let identities = identity::unlock(&loaded.config.node.data_dir, identities)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cosmic-node")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut signals = Signals::install().context("listening for signals")?;
        let sources = loaded.sources().join(" < ");
        let node = Node::start_with_identities(loaded.config, identities).await.map_err(in_use)?;
        for (alias, author) in node.identities() {
            tracing::info!(alias, %author, "identity unlocked");
        }
        tracing::info!(
            peer_id = %node.peer_id(),
            data_dir = %node.data_dir().display(),
            config = %sources,
            "node started"
        );
        let listen = node.listen_addrs().await.context("reading the listen addresses")?;
        let listen = listen.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let api = node.api_addr().map_or_else(|| "off".to_owned(), |addr| format!("http://{addr}"));
        output::line(&format!("ready peer_id={} api={api} listen={listen}", node.peer_id()));
        let signal = signals.wait().await.context("listening for signals")?;
        tracing::info!(signal, "shutting down");
        node.shutdown().await.context("shutting down")?;
        Ok(())
    })
}

/// Signal listeners, installed before the node says it is ready: a signal that arrives
/// after the ready line must stop the node cleanly, never kill it with the default action.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for SIGTERM or SIGINT (Ctrl-C elsewhere) and names it.
    async fn wait(&mut self) -> std::io::Result<&'static str> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => Ok("SIGTERM"),
                _ = self.interrupt.recv() => Ok("SIGINT"),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await?;
            Ok("ctrl-c")
        }
    }
}

fn config_show(loaded: &Loaded, json: bool) -> Result<(), Failure> {
    let explained = loaded.explain();
    if json {
        let rows: Vec<_> = explained
            .iter()
            .map(
                |row| serde_json::json!({"key": row.key, "value": row.value, "origin": row.origin}),
            )
            .collect();
        let text = serde_json::to_string_pretty(&rows).context("encoding JSON")?;
        output::line(&text);
        return Ok(());
    }
    let width = explained.iter().map(|row| row.key.len() + row.value.len() + 3).max().unwrap_or(0);
    for row in explained {
        let assignment = format!("{} = {}", row.key, row.value);
        output::line(&format!("{assignment:<width$}  # {}", row.origin));
    }
    Ok(())
}

mod logging {
    //! The tracing subscriber: logs go to stderr, as text or JSON lines.

    use cosmic_config::{LogConfig, LogFormat};
    use tracing_subscriber::EnvFilter;

    /// Gossipsub warns once per message it drops for a slow peer ("Send Queue full"):
    /// thousands of lines in a burst. Those losses are counted (`cosmic_gossip_lost_total`) and
    /// repaired by the replicator, which logs them at debug; unless a filter names
    /// gossipsub itself, only its errors are shown.
    const QUIET_GOSSIPSUB: &str = "libp2p_gossipsub=error";

    /// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.filter`.
    pub(crate) fn install(config: &LogConfig) -> anyhow::Result<()> {
        let (directives, origin) = match std::env::var("RUST_LOG") {
            Ok(directives) if !directives.trim().is_empty() => (directives, "RUST_LOG"),
            _ => (config.filter.clone(), "`log.filter`"),
        };
        let mut filter = EnvFilter::try_new(&directives)
            .map_err(|error| anyhow::anyhow!("invalid {origin} {directives:?}: {error}"))?;
        if !directives.contains("libp2p_gossipsub")
            && let Ok(quiet) = QUIET_GOSSIPSUB.parse()
        {
            filter = filter.add_directive(quiet);
        }
        let builder =
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        let result = match config.format {
            LogFormat::Json => builder.json().try_init(),
            _ => builder.try_init(),
        };
        result.map_err(|error| anyhow::anyhow!("installing the log subscriber: {error}"))
    }
}

mod output {
    //! The one place that writes to stdout (data for the user or for scripts) and warnings
    //! to stderr.

    /// Prints one line to stdout.
    #[expect(clippy::print_stdout, reason = "stdout is the CLI's output channel")]
    pub(crate) fn line(text: &str) {
        println!("{text}");
    }

    /// Prints one warning line to stderr, beside the data on stdout.
    #[expect(clippy::print_stderr, reason = "stderr is the CLI's channel for warnings")]
    pub(crate) fn warning(text: &str) {
        eprintln!("warning: {text}");
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::Cli;

    /// Clap's own consistency checks: no two arguments of a command share an id (a global
    /// `--json` and a positional named `json` once did), every default parses.
    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_document_put_takes_its_object_and_the_global_json_flag_together() {
        let cli = Cli::try_parse_from([
            "cosmic-node",
            "doc",
            "put",
            "space",
            "users/alice",
            "{\"a\": 1}",
            "--json",
        ]);
        assert!(cli.is_ok(), "{:?}", cli.err());
    }
}
