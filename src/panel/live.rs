//! Live updates over Server-Sent Events, cheap however many tabs watch:
//! one ticker per topic (the pushes list, or one push) asks the backend
//! once a second while anyone watches, serializes the update once, and
//! every viewer's stream gets the same `Arc<str>`. A ticker with no viewer
//! left stops. Unchanged data is not sent again, so a viewer gets at most
//! one update a second and none while nothing moves.

use super::backend::Backend;
use super::view::{PushRow, PushView};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often a watched topic is read.
pub const PERIOD: Duration = Duration::from_secs(1);

/// How often the Scripts page's topic is read: a saved script (300 ms of
/// debounce, then the load) shows there within about a second. It sends
/// nothing until a reload changes what the page shows.
pub const SCRIPTS_PERIOD: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    Pushes,
    Push(String),
    /// The live script generation and the last reload attempt.
    Scripts,
}

type Snapshot = Option<Arc<str>>;

pub struct Live {
    backend: Backend,
    topics: Mutex<HashMap<Topic, watch::Sender<Snapshot>>>,
}

impl Live {
    pub fn new(backend: Backend) -> Arc<Live> {
        Arc::new(Live {
            backend,
            topics: Mutex::new(HashMap::new()),
        })
    }

    /// A receiver of `topic`'s updates, starting its ticker if none runs.
    pub fn subscribe(self: &Arc<Self>, topic: Topic) -> watch::Receiver<Snapshot> {
        let mut topics = match self.topics.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(tx) = topics.get(&topic) {
            let mut rx = tx.subscribe();
            // The latest snapshot goes out at once, not after the next change.
            rx.mark_changed();
            return rx;
        }
        let (tx, rx) = watch::channel(None);
        topics.insert(topic.clone(), tx.clone());
        tracing::debug!(topic = ?topic, "panel live ticker started");
        tokio::spawn(self.clone().tick(topic, tx));
        rx
    }

    async fn tick(self: Arc<Self>, topic: Topic, tx: watch::Sender<Snapshot>) {
        let shutdown = self.backend.shutdown();
        let period = if topic == Topic::Scripts {
            SCRIPTS_PERIOD
        } else {
            PERIOD
        };
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_rows: Option<String> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {}
            }
            {
                // Checked under the map's lock, so no subscriber can slip in
                // between "nobody watches" and the removal.
                let mut topics = match self.topics.lock() {
                    Ok(t) => t,
                    Err(poisoned) => poisoned.into_inner(),
                };
                if tx.receiver_count() == 0 {
                    topics.remove(&topic);
                    tracing::debug!(topic = ?topic, "panel live ticker stopped: nobody watches");
                    return;
                }
            }
            let Some((rows, text)) = self.snapshot(&topic).await else {
                continue;
            };
            // Unchanged rows are not sent again (the time alone is no news).
            if last_rows.as_deref() == Some(rows.as_str()) {
                continue;
            }
            last_rows = Some(rows);
            tx.send_replace(Some(Arc::from(text.as_str())));
        }
        if let Ok(mut topics) = self.topics.lock() {
            topics.remove(&topic);
        }
    }

    /// The update as the page's script reads it (see `assets/panel.js`),
    /// with its rows alone to compare with the last one.
    async fn snapshot(&self, topic: &Topic) -> Option<(String, String)> {
        let at = chrono::Utc::now().timestamp_millis();
        if *topic == Topic::Scripts {
            let status = match self.backend.status().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "live scripts update failed");
                    return None;
                }
            };
            let fingerprint = super::system::fingerprint(&status);
            let text = json!({ "at": at, "rows": [], "fingerprint": fingerprint }).to_string();
            return Some((fingerprint, text));
        }
        let rows = match topic {
            Topic::Pushes => match self.backend.pushes().await {
                Ok(pushes) => pushes
                    .iter()
                    .map(|p| PushRow::from_summary(p).live())
                    .collect(),
                Err(e) => {
                    tracing::debug!(error = %e, "live pushes update failed");
                    return None;
                }
            },
            Topic::Push(name) => match self.backend.push(name).await {
                Ok(d) => vec![PushView::new(&d).live()],
                Err(e) => {
                    tracing::debug!(push = %name, error = %e, "live push update failed");
                    return None;
                }
            },
            Topic::Scripts => return None,
        };
        let rows = serde_json::Value::Array(rows);
        let text = json!({ "at": at, "rows": rows }).to_string();
        Some((rows.to_string(), text))
    }
}

/// The SSE response for one viewer of `topic`; ends at shutdown.
pub fn stream(
    live: &Arc<Live>,
    topic: Topic,
    shutdown: CancellationToken,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let rx = live.subscribe(topic);
    let events = futures::stream::unfold((rx, shutdown), |(mut rx, shutdown)| async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                changed = rx.changed() => changed.ok()?,
            }
            let snapshot = rx.borrow_and_update().clone();
            if let Some(text) = snapshot {
                let event = Event::default().event("update").data(&*text);
                return Some((Ok(event), (rx, shutdown)));
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
