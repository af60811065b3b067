//! Whether the enforcer can be trusted to enforce right now, beyond "it answers":
//! its table is intact (the guard restores it when someone else changes it), and
//! bridged traffic reaches netfilter where chained endpoints need it. `zwctl status`
//! (and so the CNI plugin's STATUS) and `/metrics` read it.

use std::sync::{Mutex, PoisonError};

use crate::registry::now_unix_ms;

/// What the guard knows of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Table {
    Intact,
    /// Someone else changed it; the restore is running.
    Restoring(String),
    /// The restore failed (and is retried).
    Broken(String),
}

#[derive(Debug)]
struct State {
    table: Table,
    restores: u64,
    /// The last restore: when, and what had happened.
    last_restore: Option<(i64, String)>,
    /// Why bridged traffic does not reach netfilter, when chained endpoints need it.
    bridge: Option<String>,
}

/// Shared by the guard, the chained-mode check, the gRPC status and `/metrics`.
#[derive(Debug)]
pub struct Readiness {
    state: Mutex<State>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                table: Table::Intact,
                restores: 0,
                last_restore: None,
                bridge: None,
            }),
        }
    }
}

impl Readiness {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn table_tampered(&self, what: &str) {
        self.lock().table = Table::Restoring(what.to_owned());
    }

    pub fn table_restored(&self, what: &str) {
        let mut state = self.lock();
        state.table = Table::Intact;
        state.restores += 1;
        state.last_restore = Some((now_unix_ms(), what.to_owned()));
    }

    pub fn table_broken(&self, error: &str) {
        self.lock().table = Table::Broken(error.to_owned());
    }

    /// Bridged traffic skips netfilter (`Some(why)`) or reaches it (`None`).
    pub fn set_bridge(&self, problem: Option<String>) {
        self.lock().bridge = problem;
    }

    pub fn bridge_problem(&self) -> Option<String> {
        self.lock().bridge.clone()
    }

    /// Why the enforcer is not ready, or `None`.
    pub fn not_ready(&self) -> Option<String> {
        let state = self.lock();
        let table = match &state.table {
            Table::Intact => None,
            Table::Restoring(what) => {
                Some(format!("table inet zonewarden is being restored: {what}"))
            }
            Table::Broken(err) => Some(format!(
                "table inet zonewarden differs from the enforcer's state and cannot be restored: {err}"
            )),
        };
        table.or_else(|| {
            state
                .bridge
                .as_ref()
                .map(|why| format!("chained endpoints are not enforced: {why}"))
        })
    }

    /// Whether the table is as the enforcer programmed it.
    pub fn table_intact(&self) -> bool {
        self.lock().table == Table::Intact
    }

    /// How many times the table was restored since the start.
    pub fn restores(&self) -> u64 {
        self.lock().restores
    }

    /// `table restored 3 time(s), last at T: what happened`, for a ready status.
    pub fn news(&self) -> Option<String> {
        let state = self.lock();
        state.last_restore.as_ref().map(|(at, what)| {
            format!(
                "table inet zonewarden restored {} time(s) since the start, last at unix ms {at}: {what}",
                state.restores
            )
        })
    }
}
