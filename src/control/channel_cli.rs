//! `pushd channel …`, the subcommands that connect a real channel: their
//! arguments as the CLI parses them and the socket request each makes
//! (kept here so `cli/args.rs` stays a list of commands).

use crate::protocol::{ChannelTestArgs, ChannelWebhookArgs, Request};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum ChannelCommand {
    /// Check a channel's credentials with the platform's harmless call (nothing
    /// is sent); with --to, then send one test message.
    Test {
        /// The channel instance (`[channels.NAME]` in config.toml).
        name: String,
        /// The platform's id for a user to send one test message to (a phone
        /// number with country code on WhatsApp, a chat id on Telegram, …).
        #[arg(long, value_name = "CHANNEL_USER_ID")]
        to: Option<String>,
    },
    /// Print the webhook URL and what to enter in the platform's console;
    /// on Telegram, register it (setWebhook) or remove it (--delete).
    Webhook {
        /// The channel instance (`[channels.NAME]` in config.toml).
        name: String,
        /// The public base URL platforms reach pushd at (default: [http]
        /// public_url, else the listen address).
        #[arg(long, value_name = "PUBLIC_BASE")]
        url: Option<String>,
        /// Remove the webhook (Telegram's deleteWebhook).
        #[arg(long)]
        delete: bool,
    },
}

impl ChannelCommand {
    pub fn request(&self) -> Request {
        match self {
            ChannelCommand::Test { name, to } => Request::ChannelTest(ChannelTestArgs {
                name: name.clone(),
                to: to.clone(),
            }),
            ChannelCommand::Webhook { name, url, delete } => {
                Request::ChannelWebhook(ChannelWebhookArgs {
                    name: name.clone(),
                    url: url.clone(),
                    delete: *delete,
                })
            }
        }
    }
}
