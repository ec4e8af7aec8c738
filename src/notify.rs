//! notify: outgoing webhooks on incident changes and early-warning alerts. An event is queued
//! in the database (one row per receiver, the delivery log, holding the body as sent: generic
//! JSON or a Slack-compatible message) and a worker POSTs due rows, retrying with backoff.
//!
//! Receivers come from the config only (not from web input), and requests go through the
//! crawler's guarded client (timeouts, body and redirect caps, no private addresses unless
//! `crawl.allow_private_networks`), shared with crawling.
use crate::config::{WebhookConfig, WebhookFormat};
use crate::store::{Store, StoreError, WebhookDelivery};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};

/// Attempts before a delivery is marked failed; waits double from `FIRST_RETRY_MS`.
pub const MAX_ATTEMPTS: i64 = 6;
pub const FIRST_RETRY_MS: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Incident,
    Alert,
}

pub struct Notifier {
    hooks: Vec<WebhookConfig>,
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// When the next attempt is due after `attempts` failed ones, or None to give up.
pub fn retry_at(now: i64, attempts: i64) -> Option<i64> {
    (attempts < MAX_ATTEMPTS).then(|| now + FIRST_RETRY_MS * (1 << (attempts - 1).clamp(0, 20)))
}

impl Notifier {
    pub fn new(hooks: Vec<WebhookConfig>) -> Self {
        Self { hooks }
    }

    pub fn enabled(&self) -> bool {
        !self.hooks.is_empty()
    }

    /// Queues an event for every receiver that takes its topic: `payload` for JSON
    /// receivers, `text` as `{"text": …}` for Slack-compatible ones.
    pub async fn enqueue(
        &self,
        store: &Store,
        topic: Topic,
        event: &str,
        payload: &serde_json::Value,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for h in &self.hooks {
            let wanted = match topic {
                Topic::Incident => h.incidents,
                Topic::Alert => h.alerts,
            };
            if !wanted {
                continue;
            }
            let body = match h.format {
                WebhookFormat::Json => payload.to_string(),
                WebhookFormat::Slack => serde_json::json!({ "text": text }).to_string(),
            };
            store
                .enqueue_webhooks(&[h.url.to_string()], event, &body, now.timestamp_millis())
                .await?;
        }
        Ok(())
    }

    /// Delivers what is due; returns how many were attempted.
    pub async fn deliver_due(
        &self,
        store: &Store,
        http: &crate::crawl::HttpClient,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let now_ms = now.timestamp_millis();
        let due = store.due_webhooks(now_ms, 20).await?;
        for d in &due {
            self.deliver(store, http, d, now_ms).await?;
        }
        Ok(due.len())
    }

    async fn deliver(
        &self,
        store: &Store,
        http: &crate::crawl::HttpClient,
        d: &WebhookDelivery,
        now: i64,
    ) -> Result<(), StoreError> {
        let secret = self
            .hooks
            .iter()
            .find(|h| h.url.as_str() == d.url)
            .and_then(|h| h.secret.clone());
        let mut headers = vec![
            ("content-type", "application/json".to_string()),
            ("x-kizashi-event", d.event.clone()),
            ("x-kizashi-delivery", d.id.to_string()),
        ];
        if let Some(s) = secret {
            headers.push(("x-kizashi-signature", signature(&s, d.payload.as_bytes())));
        }
        let attempts = d.attempts + 1;
        // Through the crawler's guarded client: timeouts, no private addresses unless allowed.
        match http.post_status(&d.url, &headers, d.payload.clone()).await {
            Ok(code) if (200..300).contains(&code) => {
                store
                    .webhook_attempted(d.id, Some(code), None, true, None, now)
                    .await
            }
            Ok(code) => {
                let msg = format!("HTTP {code}");
                store
                    .webhook_attempted(
                        d.id,
                        Some(code),
                        Some(&msg),
                        false,
                        retry_at(now, attempts),
                        now,
                    )
                    .await
            }
            Err(e) => {
                let msg = e.to_string();
                store
                    .webhook_attempted(d.id, None, Some(&msg), false, retry_at(now, attempts), now)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc4231_case_2() {
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retries_back_off_then_stop() {
        assert_eq!(retry_at(0, 1), Some(10_000));
        assert_eq!(retry_at(0, 2), Some(20_000));
        assert_eq!(retry_at(0, 5), Some(160_000));
        assert_eq!(retry_at(0, 6), None);
    }
}
