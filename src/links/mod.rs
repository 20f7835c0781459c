//! Tracked links: a template's `{{track "https://…"}}` and `track = true`
//! URL buttons are sent as `<[links] public_url>/l/TOKEN`, TOKEN naming
//! (delivery, link) under the daemon's key ([`token`]); `GET /l/TOKEN`
//! records the click and redirects to the URL registered for that link.
//!
//! How the pieces meet: the template renders a [`marker`] where each
//! tracked URL goes; when a push starts, its template's tracked URLs are
//! registered once for the push ([`Links::minter`]); the dispatcher's page
//! loader replaces each marker with the delivery's URL ([`Minter::apply`])
//! before the send. Nothing per recipient is written until a click. A
//! click ([`Links::click`]) is checked in memory (the MAC), then recorded
//! through a batching writer ([`clicks`]) as `[links] privacy` says, and
//! answered with a 302 to the registered URL only: a token can never send
//! anyone anywhere else.

mod clicks;
pub mod marker;
pub mod preview;
pub mod token;

use crate::config::{LiveConfig, Privacy};
use crate::model::{DeliveryId, Outbound, PushId, now_ms};
use crate::store::links::{self as stored, Click};
use crate::store::{Store, StoreError};
use std::sync::Arc;
use token::Key;

/// Why a push's tracked links cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The push cannot send its tracked links as configured.
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a request for `/l/TOKEN` gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClickOutcome {
    /// 302 to the link's registered URL.
    Redirect(String),
    /// Not a token of ours, or no such link: 404, nothing recorded.
    NotFound,
    /// The store could not record it (or look it up): 503, try again.
    Unavailable(String),
}

/// Tracked links for the dispatcher (minting) and the HTTP listener
/// (clicks): the key, the store, the live `[links]` settings.
pub struct Links {
    key: Arc<Key>,
    store: Store,
    config: Arc<LiveConfig>,
    clicks: clicks::Queue,
}

impl Links {
    /// Loads the key (making it on first use) and starts the click writer.
    pub async fn open(store: &Store, config: Arc<LiveConfig>) -> Result<Links, StoreError> {
        let fresh = Key::generate();
        let bytes = store.write(move |c| stored::key(c, &fresh)).await?;
        let key = Key::from_bytes(&bytes).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(Links {
            key: Arc::new(key),
            store: store.clone(),
            config,
            clicks: clicks::Queue::start(store.clone()),
        })
    }

    /// What replaces the markers of `template`'s messages for `push`:
    /// registers the template's tracked URLs for the push (once each) and
    /// takes `[links] public_url` as it is now. None when it tracks nothing.
    pub async fn minter(
        &self,
        push: PushId,
        template: &str,
        tracked: &[String],
    ) -> Result<Option<Arc<Minter>>, LinkError> {
        if tracked.is_empty() {
            return Ok(None);
        }
        let Some(base) = self.config.get().links.public_url.clone() else {
            return Err(LinkError::Setup(format!(
                "template {template:?} tracks links, but [links] public_url is not set in config.toml; \
                 set it to the public http(s) address that reaches this daemon's HTTP listener, then resume the push"
            )));
        };
        let urls = tracked.to_vec();
        let links = self
            .store
            .write(move |c| stored::register(c, push, &urls))
            .await?;
        Ok(Some(Arc::new(Minter {
            key: self.key.clone(),
            prefix: format!("{base}/l/"),
            links,
        })))
    }

    /// A request for `/l/TOKEN`: checks the token, records what `[links]
    /// privacy` asks (a click, or a preview when `head`, a fetcher's
    /// User-Agent or the preview window says so), and says where to go.
    pub async fn click(&self, token: &str, head: bool, user_agent: Option<&str>) -> ClickOutcome {
        let Some((delivery, link)) = token::open(&self.key, token) else {
            return ClickOutcome::NotFound;
        };
        let cfg = self.config.get();
        let settings = &cfg.links;
        let found = match settings.privacy {
            Privacy::Off => {
                self.store
                    .read(move |c| stored::url(c, delivery, link))
                    .await
            }
            privacy => {
                let click = Click {
                    delivery,
                    link,
                    at: now_ms(),
                    fetch: preview::is_fetch(head, user_agent),
                    per_recipient: privacy == Privacy::Individual,
                    preview_window_ms: settings.preview_window.as_millis() as i64,
                };
                self.clicks.record(click).await
            }
        };
        match found {
            Ok(Some(url)) => ClickOutcome::Redirect(url),
            Ok(None) => ClickOutcome::NotFound,
            Err(e) => ClickOutcome::Unavailable(e.to_string()),
        }
    }
}

/// Puts each delivery's `/l/TOKEN` URLs where its message has markers.
#[derive(Debug)]
pub struct Minter {
    key: Arc<Key>,
    /// `<public_url>/l/`
    prefix: String,
    /// The template's link number → the push's.
    links: Vec<u8>,
}

impl Minter {
    /// The URL of template link `local` for `delivery`.
    pub fn url(&self, delivery: DeliveryId, local: u8) -> Option<String> {
        let link = *self.links.get(usize::from(local))?;
        let mut url = String::with_capacity(self.prefix.len() + token::MAX_LEN);
        url.push_str(&self.prefix);
        url.push_str(&token::encode(&self.key, delivery, link));
        Some(url)
    }

    /// Replaces the markers of `delivery`'s message with its URLs (each
    /// link's token made once, however often the message shows it).
    pub fn apply(&self, delivery: DeliveryId, outbound: &mut Outbound) {
        let mut made: [Option<String>; marker::COUNT as usize] = Default::default();
        marker::substitute(outbound, |local| {
            let slot = made.get_mut(usize::from(local))?;
            if slot.is_none() {
                *slot = self.url(delivery, local);
            }
            slot.clone()
        });
    }
}
