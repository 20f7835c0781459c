//! Instagram messaging through the Messenger API for Instagram: the same Send
//! API, host and Page token as Messenger (see `messenger.rs`, which builds
//! the requests), with Instagram's own limits (`Flavor::Instagram`).
//!
//! Sources: developers.facebook.com/docs/messenger-platform/instagram/features/send-message
//! ("text must be UTF-8 and less than 1000 characters"); quick replies ≤ 13,
//! titles ≤ 20 (…/instagram/features/quick-replies); `HUMAN_AGENT` is the only
//! tag Instagram accepts for replies after the 24 h window.

use crate::channel::messenger::{Flavor, Messenger};
use crate::channel::{ChannelContext, ChannelError};
use crate::config::ChannelConfig;

/// An Instagram channel instance.
pub fn new(
    name: &str,
    cfg: &ChannelConfig,
    ctx: &ChannelContext,
) -> Result<Messenger, ChannelError> {
    Messenger::new(name, cfg, ctx, Flavor::Instagram)
}
