//! Filtered audit reads in redb.

use uuid::Uuid;

use super::{AUDIT, Db, StoreResult, dec};
use crate::store::AuditEntry;
use crate::store::audit_query::*;

/// The smallest UUIDv7 key at or after `secs`.
fn key_at(secs: i64) -> u128 {
    let ms = (secs.max(0) as u128) * 1000;
    (ms & ((1 << 48) - 1)) << 80
}

impl Db {
    /// Newest first, strictly older than `before`, matching `f`. Returns the
    /// entries and, when the scan stopped early, the key to continue from.
    pub fn list_audit_filtered(
        &self,
        before: Option<Uuid>,
        limit: usize,
        f: &AuditFilter,
    ) -> StoreResult<(Vec<AuditEntry>, Option<Uuid>)> {
        let tx = self.read()?;
        let t = tx.open_table(AUDIT)?;
        let mut end = before.map(|b| b.as_u128()).unwrap_or(u128::MAX);
        if let Some(to) = f.to {
            end = end.min(key_at(to));
        }
        let start = f.from.map(key_at).unwrap_or(0);
        let mut out = Vec::new();
        let mut scanned = 0;
        for r in t.range(start..end)?.rev() {
            let (k, v) = r?;
            let key = k.value();
            let e: AuditEntry = dec(v.value())?;
            if f.matches(&e) {
                out.push(e);
                if out.len() >= limit {
                    return Ok((out, None));
                }
            }
            scanned += 1;
            if scanned >= MAX_SCAN {
                return Ok((out, Some(Uuid::from_u128(key))));
            }
        }
        Ok((out, None))
    }
}
