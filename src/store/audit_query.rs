//! Filtered reads of the audit log (actor, action, time range) for the
//! admin audit page. Audit ids are UUIDv7, so a time range is a key range.

use super::AuditEntry;

/// Entries examined per page at most, so a filter that matches little
/// cannot turn one request into a scan of the whole log.
pub const MAX_SCAN: usize = 20_000;

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Matches the actor's name or id (case-insensitive, exact).
    pub actor: Option<String>,
    /// An action (`login`) or a prefix ending in `.` or `*` (`admin.`, `provider*`).
    pub action: Option<String>,
    /// Unix seconds, inclusive.
    pub from: Option<i64>,
    /// Unix seconds, exclusive.
    pub to: Option<i64>,
}

impl AuditFilter {
    pub fn is_empty(&self) -> bool {
        self.actor.is_none() && self.action.is_none() && self.from.is_none() && self.to.is_none()
    }

    pub fn matches(&self, e: &AuditEntry) -> bool {
        if let Some(a) = &self.actor {
            let by_name = e
                .actor_name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(a));
            let by_id = e
                .actor
                .is_some_and(|id| id.to_string() == a.to_ascii_lowercase());
            if !by_name && !by_id {
                return false;
            }
        }
        if let Some(act) = &self.action {
            let ok = match act.strip_suffix('*') {
                Some(prefix) => e.action.starts_with(prefix),
                None if act.ends_with('.') => e.action.starts_with(act.as_str()),
                None => e.action == *act,
            };
            if !ok {
                return false;
            }
        }
        true
    }
}
