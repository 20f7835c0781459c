//! The command line's grammar: every subcommand and flag, with the help
//! text clap prints. Binary only (the library never parses arguments).

use clap::{Args, Parser, Subcommand, ValueEnum};
use pushd::control::channel_cli::ChannelCommand;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "pushd",
    version,
    about = "Push-messaging daemon for chatbot operators"
)]
pub struct Cli {
    /// Config file (default: ./config.toml, else built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Control socket (default: the one named in the config).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print the daemon's raw JSON reply.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
    Html,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (SIGTERM drains, SIGHUP reloads).
    Serve {
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Validate config and scripts without a daemon; non-zero exit on any problem.
    Check,
    /// Uptime, config and script generation, pushes with progress and ETA.
    Status,
    /// Reload config.toml and the scripts now.
    Reload,
    /// Manage pushes.
    Push {
        #[command(subcommand)]
        command: PushCommand,
    },
    /// Audiences: list, show, preview (nothing sent), save from a push.
    Audience {
        #[command(subcommand)]
        command: AudienceCommand,
    },
    /// Key indicators of a push (Sent Success/Fail, Read & Interacted, ...).
    Report {
        push: String,
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Failed recipients grouped by error class and code.
    Failures {
        push: String,
        /// Sample recipients per group.
        #[arg(long, default_value_t = 5)]
        samples: u32,
    },
    /// Detailed report: one CSV row per recipient.
    Export {
        push: String,
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
    /// A static audience of a push's failed recipients, to push again.
    RetryAudience {
        push: String,
        #[arg(long)]
        name: String,
        /// Only failures worth retrying as they are.
        #[arg(long, value_parser = ["transient"])]
        only: Option<String>,
    },
    /// A push's recipients with their timeline, filtered and paged.
    Recipients {
        push: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Recipients per page (table, json).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after this cursor (the `next` of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// csv lists every matching recipient (all pages).
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Channels: check credentials, send a test message, set up webhooks.
    Channel {
        #[command(subcommand)]
        command: ChannelCommand,
    },
    /// Members: import from CSV or JSON lines.
    Members {
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Who changed what, when.
    Audit(AuditArgs),
    /// A consistent copy of the live database, written by the daemon while
    /// pushes run (restore: stop pushd, copy it into place, start).
    Backup {
        /// The copy to write (relative to this directory).
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// The message log: sends and inbound webhook events, newest first.
    Events {
        #[arg(long)]
        push: Option<String>,
        /// Member id or channel:channel_user_id.
        #[arg(long)]
        member: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// The web panel: one-time login links, ending sessions.
    Panel {
        #[command(subcommand)]
        command: PanelCommand,
    },
}

#[derive(Subcommand)]
pub enum PanelCommand {
    /// Print a one-time login URL for the web panel (admin unless --viewer).
    Login {
        /// A read-only session: every action answers 403.
        #[arg(long)]
        viewer: bool,
        /// How long the link stays usable (default 15m).
        #[arg(long, value_name = "DUR")]
        ttl: Option<String>,
    },
    /// End every panel session and void every unused login link.
    LogoutAll,
}

// (Parsed once per process: the size of its largest variant costs nothing.)
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum PushCommand {
    /// Create a push (starts now unless --at).
    Create {
        #[arg(long)]
        audience: String,
        #[arg(long)]
        template: String,
        /// Unique name (default: audience + timestamp).
        #[arg(long)]
        name: Option<String>,
        /// "now" or an RFC 3339 time.
        #[arg(long)]
        at: Option<String>,
        /// Messages per minute for this push (the global rate still caps it).
        #[arg(long)]
        rate: Option<u32>,
        #[arg(long, requires = "batch_every")]
        batch_size: Option<u32>,
        /// e.g. "1h".
        #[arg(long, requires = "batch_size")]
        batch_every: Option<String>,
        /// Send window start, HH:MM in each member's timezone.
        #[arg(long, requires = "window_to")]
        window_from: Option<String>,
        #[arg(long, requires = "window_from")]
        window_to: Option<String>,
        /// "bypass": [policy] frequency caps and quiet hours do not apply
        /// (transactional messages; audited).
        #[arg(long)]
        policy: Option<String>,
        /// A/B test: the share of the audience sent first ("20%"); the
        /// template must have variants.
        #[arg(long, requires = "test_wait")]
        test_share: Option<String>,
        /// How long after the test share is sent the winner is chosen ("2h").
        #[arg(long, requires = "test_share")]
        test_wait: Option<String>,
        /// read (default), interacted or clicked.
        #[arg(long, requires = "test_share")]
        test_metric: Option<String>,
        /// auto (default) or manual (`pushd push pick-winner`).
        #[arg(long, requires = "test_share")]
        winner: Option<String>,
        /// A control group sent nothing ("5%").
        #[arg(long)]
        holdout: Option<String>,
    },
    /// Choose the winner of an A/B test (a manual test, or early).
    PickWinner {
        push: String,
        variant: String,
    },
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    Show {
        push: String,
        /// Draw a live progress bar until the push finishes.
        #[arg(long)]
        follow: bool,
    },
    Pause {
        push: String,
    },
    Resume {
        push: String,
    },
    Cancel {
        push: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
    Csv,
}

/// Which recipients of a push (`recipients`, `audience from-push`).
#[derive(Args)]
pub struct FilterArgs {
    /// read_and_interacted, read_only, interacted_only, not_read_or_interacted,
    /// sent_fail, skipped, cancelled, clicked (a tracked link).
    #[arg(long)]
    pub outcome: Option<String>,
    /// The channel instance they were sent through.
    #[arg(long)]
    pub channel: Option<String>,
    #[arg(long)]
    pub locale: Option<String>,
    #[arg(long)]
    pub error_class: Option<String>,
    #[arg(long)]
    pub error_code: Option<String>,
    /// The A/B variant they were assigned (`holdout` for the control group).
    #[arg(long)]
    pub variant: Option<String>,
}

#[derive(Subcommand)]
pub enum AudienceCommand {
    /// Every audience by name: the scripts' (definition, file:line, size)
    /// and the saved ones (lineage, members).
    List {
        /// Continue after this name (the `next` of the previous page).
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One audience: its definition or lineage, its exact size now and
    /// its first subscribed members.
    Show {
        name: String,
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// Size and sample rendered messages; nothing is sent.
    Preview {
        name: String,
        #[arg(long, default_value_t = 5)]
        limit: u32,
        #[arg(long)]
        template: Option<String>,
    },
    /// A saved audience of a push's recipients with an outcome (and filters),
    /// to push again to; members who unsubscribed since are left out.
    FromPush {
        push: String,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum MembersCommand {
    /// Upsert members by (channel, channel_user_id) from a CSV (with header) or JSON-lines file.
    Import {
        file: PathBuf,
        /// Import the valid rows even if some are invalid.
        #[arg(long)]
        skip_invalid: bool,
    },
}

#[derive(Args)]
pub struct AuditArgs {
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Only this action (e.g. "push" or "reload.scripts").
    #[arg(long)]
    pub action: Option<String>,
    /// Only this actor: a uid, `daemon`, or a panel session (`panel` for all).
    #[arg(long)]
    pub actor: Option<String>,
    /// Entries older than this id (the `next` of the previous page, in --json).
    #[arg(long)]
    pub before: Option<i64>,
}
