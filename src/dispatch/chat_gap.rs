//! One message per second per chat, for platforms that allow a bot no more
//! (Telegram: "avoid sending more than one message per second" in one
//! chat, else 429s). Several pushes — or a push and a retry — can reach the
//! same chat at once; each send to a chat takes the chat's turn, waits
//! until a second has passed since the previous send to it *ended*, and
//! passes the turn on when its own request ends. Measured at the platform,
//! two messages to one chat are then at least a second apart. The
//! recipient waits; it is never failed for it.
//!
//! Only chats in use are kept: an entry nobody holds and whose second has
//! passed is swept once the map grows.

use crate::channel::Channel;
use crate::model::Platform;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

/// The least time between two messages to one chat.
pub const GAP: Duration = Duration::from_secs(1);
/// Entries kept before a sweep.
const SWEEP_AT: usize = 4096;

type Chat = Arc<tokio::sync::Mutex<Option<Instant>>>;

#[derive(Default)]
pub struct ChatGaps {
    /// (channel, chat id) → when the last send to it ended.
    chats: Mutex<HashMap<(String, String), Chat>>,
}

/// A chat's turn: held while the request is under way; records its end.
pub struct Turn(OwnedMutexGuard<Option<Instant>>);

impl Drop for Turn {
    fn drop(&mut self) {
        *self.0 = Some(Instant::now());
    }
}

impl ChatGaps {
    /// [`ChatGaps::turn`] on the channels whose platform limits a chat to a
    /// message a second (Telegram); None, at once, on the others.
    pub async fn turn_for(&self, channel: &dyn Channel, chat: &str) -> Option<Turn> {
        match channel.platform() {
            Platform::Telegram => Some(self.turn(channel.name(), chat).await),
            _ => None,
        }
    }

    /// Waits for `chat`'s turn on `channel` and for its gap to pass.
    pub async fn turn(&self, channel: &str, chat: &str) -> Turn {
        let entry = {
            let mut chats = self.chats.lock().unwrap_or_else(|p| p.into_inner());
            if chats.len() >= SWEEP_AT {
                sweep(&mut chats);
            }
            chats
                .entry((channel.to_string(), chat.to_string()))
                .or_default()
                .clone()
        };
        let guard = entry.lock_owned().await;
        if let Some(last) = *guard {
            tokio::time::sleep_until(last + GAP).await;
        }
        Turn(guard)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.chats.lock().map(|c| c.len()).unwrap_or(0)
    }
}

/// Drops the chats nobody waits on whose gap has passed.
fn sweep(chats: &mut HashMap<(String, String), Chat>) {
    let now = Instant::now();
    chats.retain(|_, chat| {
        Arc::strong_count(chat) > 1
            || chat
                .try_lock()
                .map(|last| last.is_none_or(|t| t + GAP > now))
                .unwrap_or(true)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sends_to_one_chat_are_a_second_apart_and_other_chats_do_not_wait() {
        let gaps = Arc::new(ChatGaps::default());
        let t0 = Instant::now();
        let mut ends = Vec::new();
        for _ in 0..3 {
            let turn = gaps.turn("tg", "42").await;
            // The request itself takes 100 ms.
            tokio::time::sleep(Duration::from_millis(100)).await;
            ends.push(Instant::now() - t0);
            drop(turn);
        }
        assert_eq!(
            ends,
            [100, 1200, 2300].map(Duration::from_millis).to_vec(),
            "each send starts a second after the previous one ended"
        );
        let other = Instant::now();
        drop(gaps.turn("tg", "43").await);
        drop(gaps.turn("tg2", "42").await);
        assert_eq!(Instant::now(), other, "other chats and channels go at once");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_chats_are_swept() {
        let gaps = ChatGaps::default();
        for i in 0..SWEEP_AT {
            drop(gaps.turn("tg", &i.to_string()).await);
        }
        tokio::time::advance(GAP * 2).await;
        drop(gaps.turn("tg", "new").await);
        assert_eq!(gaps.len(), 1);
    }
}
