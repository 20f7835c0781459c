//! The configured channel instances, swapped whole when `[channels.*]`
//! changes on a reload. Sends in flight keep the instance they started with.

use super::{ChannelContext, ChannelRef};
use crate::config::Config;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::sync::Arc;

pub type ChannelSet = BTreeMap<String, ChannelRef>;

/// Every configured channel instance, by name.
pub struct Channels {
    set: ArcSwap<ChannelSet>,
    ctx: ChannelContext,
}

/// A channel instance that cannot be built from its config section.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("channels.{name}: {message}")]
pub struct BuildError {
    pub name: String,
    pub message: String,
}

/// Builds every configured channel instance.
pub fn build_set(config: &Config, ctx: &ChannelContext) -> Result<ChannelSet, BuildError> {
    let mut set = ChannelSet::new();
    for (name, cfg) in &config.channels {
        let ch = super::build(name, cfg, ctx).map_err(|message| BuildError {
            name: name.clone(),
            message: message.to_string(),
        })?;
        set.insert(name.clone(), ch);
    }
    Ok(set)
}

impl Channels {
    pub fn build(config: &Config, ctx: ChannelContext) -> Result<Channels, BuildError> {
        let set = build_set(config, &ctx)?;
        Ok(Channels {
            set: ArcSwap::from_pointee(set),
            ctx,
        })
    }

    pub fn get(&self, name: &str) -> Option<ChannelRef> {
        self.set.load().get(name).cloned()
    }

    pub fn all(&self) -> Arc<ChannelSet> {
        self.set.load_full()
    }

    /// Rebuilds every instance from `config`; on error the running set stays.
    pub fn rebuild(&self, config: &Config) -> Result<(), BuildError> {
        let set = build_set(config, &self.ctx)?;
        self.set.store(Arc::new(set));
        Ok(())
    }
}
