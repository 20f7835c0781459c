//! Builds a channel instance from its `[channels.<name>]` table.

use crate::channel::custom::Custom;
use crate::channel::messenger::{Flavor, Messenger};
use crate::channel::slack::Slack;
use crate::channel::telegram::Telegram;
use crate::channel::wechat::WeChat;
use crate::channel::whatsapp::WhatsApp;
use crate::channel::{ChannelContext, ChannelError, ChannelRef, instagram};
use crate::config::ChannelConfig;
use crate::model::Platform;
use std::sync::Arc;

/// The adapter for `cfg.kind`, sharing `ctx`'s HTTP client. The error names
/// the missing or invalid setting.
pub fn build(
    name: &str,
    cfg: &ChannelConfig,
    ctx: &ChannelContext,
) -> Result<ChannelRef, ChannelError> {
    Ok(match cfg.kind {
        Platform::Whatsapp => Arc::new(WhatsApp::new(name, cfg, ctx)?),
        Platform::Messenger => Arc::new(Messenger::new(name, cfg, ctx, Flavor::Messenger)?),
        Platform::Instagram => Arc::new(instagram::new(name, cfg, ctx)?),
        Platform::Telegram => Arc::new(Telegram::new(name, cfg, ctx)?),
        Platform::Slack => Arc::new(Slack::new(name, cfg, ctx)?),
        Platform::Wechat => Arc::new(WeChat::new(name, cfg, ctx)?),
        Platform::Webchat | Platform::Custom => Arc::new(Custom::new(name, cfg, ctx, cfg.kind)?),
        Platform::Simulator => Arc::new(super::simulator::Simulator::new(name, cfg, ctx)),
    })
}
