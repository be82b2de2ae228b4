//! Open connections per client address, capped: one address cannot hold every file descriptor
//! of the process (slow bodies, idle keep-alive) and starve everyone else, `GET /health`
//! included.
//!
//! actix-web calls [`ConnectionLimiter::on_connect`] for each accepted connection, before a byte
//! is read. Within the cap, the connection carries a [`ConnectionSlot`] in its extensions, which
//! frees its place when the connection is dropped; over the cap, the socket is shut down at once
//! (the client sees the connection closed: no HTTP answer can be written before a request has
//! been read, and reading one is what the cap refuses to spend on it). Refusals are counted and
//! logged at most once per second.

use std::any::Any;
use std::collections::HashMap;
use std::net::{IpAddr, Shutdown};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::dev::Extensions;

use crate::log_throttle::LogThrottle;

/// Counts the open connections of each client address.
#[derive(Debug)]
pub struct ConnectionLimiter {
    per_address: NonZeroUsize,
    open: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
    refusal_log: LogThrottle,
}

/// One admitted connection's place; dropping it (with the connection) frees the place.
#[derive(Debug)]
pub struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    address: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

impl ConnectionLimiter {
    pub fn new(per_address: NonZeroUsize) -> Arc<ConnectionLimiter> {
        Arc::new(ConnectionLimiter {
            per_address,
            open: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
            refusal_log: LogThrottle::new(),
        })
    }

    /// A place for one more connection from `address`, or `None` when it holds its share.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(address).or_insert(0);
        if *count >= self.per_address.get() {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot { limiter: Arc::clone(self), address })
    }

    /// Connections open now from `address`.
    pub fn open_from(&self, address: IpAddr) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).get(&address).copied().unwrap_or(0)
    }

    /// Connections refused since the start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// actix-web's `on_connect` hook: admits the connection or shuts its socket down.
    pub fn on_connect(self: &Arc<Self>, connection: &dyn Any, extensions: &mut Extensions) {
        let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else {
            return;
        };
        let Ok(peer) = stream.peer_addr() else {
            return;
        };
        match self.admit(peer.ip()) {
            Some(slot) => {
                extensions.insert(slot);
            }
            None => {
                let _ = socket2::SockRef::from(stream).shutdown(Shutdown::Both);
                let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                if self.refusal_log.due() {
                    tracing::warn!(
                        refused_since_start = refused,
                        per_address = self.per_address.get(),
                        "a client address holds its share of connections: new ones are closed"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn an_address_gets_its_share_of_connections_and_a_place_comes_back_when_one_closes() {
        let limiter = ConnectionLimiter::new(NonZeroUsize::new(2).expect("non-zero"));
        let first = limiter.admit(address("10.0.0.1")).expect("first");
        let _second = limiter.admit(address("10.0.0.1")).expect("second");
        assert!(limiter.admit(address("10.0.0.1")).is_none(), "the third is over the share");
        assert!(limiter.admit(address("10.0.0.2")).is_some(), "another address is not affected");
        drop(first);
        assert_eq!(limiter.open_from(address("10.0.0.1")), 1);
        assert!(limiter.admit(address("10.0.0.1")).is_some(), "the freed place is usable");
    }

    #[test]
    fn an_address_without_connections_is_forgotten() {
        let limiter = ConnectionLimiter::new(NonZeroUsize::new(1).expect("non-zero"));
        drop(limiter.admit(address("10.0.0.1")));
        assert!(limiter.open.lock().expect("unpoisoned").is_empty());
    }
}
