//! Several HTTP clients for one server, so that no HTTP/2 connection
//! carries more answers than servers allow at once.
//!
//! Over HTTPS a provider that offers HTTP/2 (OpenAI, Anthropic, most
//! gateways) gets every request on one connection. Servers cap the streams
//! open at once on a connection (`SETTINGS_MAX_CONCURRENT_STREAMS`, 100 or
//! a few hundred), and hyper's client neither opens a second connection nor
//! fails past the cap: the request waits until an earlier answer ends
//! (hyperium/hyper#3623). Answers last seconds to minutes, so answer 101
//! would wait that long before its first token. Each client here has its
//! own connection pool; a request goes to the first client with fewer than
//! [`DEFAULT_PER_CONNECTION`] requests in flight over HTTPS, and a new client
//! is made when all are that busy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Requests in flight per client: RFC 9113 asks servers to allow at least
/// 100 concurrent streams.
pub const DEFAULT_PER_CONNECTION: usize = 100;

/// Clients made alike, each with its count of requests in flight; shared.
#[derive(Clone)]
pub struct Shards(Arc<ClientShards>);

struct ClientShards {
    make: Box<dyn Fn() -> reqwest::Client + Send + Sync>,
    per_connection: usize,
    shards: Mutex<Vec<(reqwest::Client, Arc<AtomicUsize>)>>,
}

impl Shards {
    /// `make` builds each client (all alike); at most `per_connection`
    /// requests in flight on each.
    pub fn new(
        per_connection: usize,
        make: impl Fn() -> reqwest::Client + Send + Sync + 'static,
    ) -> Shards {
        Shards(Arc::new(ClientShards {
            make: Box::new(make),
            per_connection: per_connection.max(1),
            shards: Mutex::new(Vec::new()),
        }))
    }

    /// A client with room for one more request, and its place, held until
    /// the [`InFlight`] (and every clone of it) is dropped.
    pub fn pick(&self) -> (reqwest::Client, InFlight) {
        let s = &self.0;
        let mut shards = s.shards.lock().unwrap_or_else(|e| e.into_inner());
        let found = shards
            .iter()
            .find(|(_, busy)| busy.load(Ordering::Acquire) < s.per_connection);
        let (client, busy) = match found {
            Some((c, b)) => (c.clone(), b.clone()),
            None => {
                let made = ((s.make)(), Arc::new(AtomicUsize::new(0)));
                shards.push(made.clone());
                made
            }
        };
        busy.fetch_add(1, Ordering::AcqRel);
        (
            client,
            InFlight {
                _held: Arc::new(Held(busy)),
            },
        )
    }

    /// Clients made so far.
    pub fn len(&self) -> usize {
        self.0
            .shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shards")
            .field("per_connection", &self.0.per_connection)
            .field("clients", &self.len())
            .finish()
    }
}

impl PartialEq for Shards {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Shards {}

/// One request's place on a client; kept in the response's extensions and
/// by the answer's stream until the body is done.
#[derive(Clone)]
pub struct InFlight {
    _held: Arc<Held>,
}

struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_added_when_every_one_is_full_and_places_come_back() {
        let shards = Shards::new(2, reqwest::Client::new);
        let a = shards.pick();
        let b = shards.pick();
        assert_eq!(shards.len(), 1);
        let c = shards.pick();
        assert_eq!(shards.len(), 2);
        drop(a);
        // The first client has room again: no third one.
        let d = shards.pick();
        let e = shards.pick();
        assert_eq!(shards.len(), 2);
        let kept = e.1.clone();
        drop((b, c, d, e));
        // A clone still holds its place.
        let f = shards.pick();
        let g = shards.pick();
        let h = shards.pick();
        assert_eq!(
            shards.len(),
            2,
            "two places on the first, one on the second"
        );
        drop((kept, f, g, h));
    }
}
