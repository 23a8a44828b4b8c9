//! Open-file budget. Every connection holds two descriptors (its socket and the duplicate the
//! keep-alive watchdog keeps, see keepalive.rs), an upload a third one for its staging file or
//! storage connection; when the process runs out, `accept` fails with EMFILE and even
//! `/healthz` stops answering. So the soft limit is raised to the hard one, and the number of
//! connections served at once is derived from what is left after the database pool, storage,
//! listeners and logs, so excess connections wait in the listen backlog instead.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Below this open-file limit, `strata serve` warns at start.
pub const RECOMMENDED: u64 = 4096;

/// Descriptors one connection may hold.
const PER_CONNECTION: u64 = 3;

/// Descriptors kept aside for everything that is not a client connection, besides the pool.
const RESERVED: u64 = 64;

/// The open-file limit after raising the soft limit as far as the hard one allows.
pub fn raise() -> Option<u64> {
    let lim = getrlimit(Resource::Nofile);
    let hard = lim.maximum.unwrap_or(1 << 20).min(1 << 20);
    if lim.current.is_some_and(|soft| soft < hard) {
        let raised = Rlimit {
            current: Some(hard),
            maximum: lim.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "raising the open-file limit failed");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Connections each worker serves at once, for an open-file limit of `nofile`: three descriptors
/// per connection (the socket, the watchdog's duplicate, an upload's staging file or storage
/// connection).
pub fn max_connections(nofile: Option<u64>, workers: usize, db_pool: u32) -> usize {
    let Some(nofile) = nofile else {
        return 25_000; // actix's own default: no limit known
    };
    let spare = nofile.saturating_sub(RESERVED + u64::from(db_pool) + 4 * workers as u64);
    usize::try_from(spare / PER_CONNECTION / workers.max(1) as u64)
        .unwrap_or(usize::MAX)
        .clamp(8, 25_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_leaves_headroom() {
        // 256 descriptors, 2 workers, a pool of 4: (256 - 64 - 4 - 8) / 3 / 2 = 30 per worker
        assert_eq!(max_connections(Some(256), 2, 4), 30);
        assert!(3 * 2 * max_connections(Some(256), 2, 16) + 64 + 16 <= 256);
        assert_eq!(max_connections(Some(10), 2, 4), 8);
        assert_eq!(max_connections(None, 4, 16), 25_000);
    }
}
