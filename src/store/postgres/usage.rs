//! Usage counters in PostgreSQL: plain BIGINT columns added to in place
//! (`ON CONFLICT DO UPDATE SET n = n + excluded.n`), so concurrent charges
//! never read-modify-write. Names are clipped as redb clips them.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{PgStore, Sql, begin, big, commit, unbig};
use crate::store::usage::*;
use crate::store::{StoreResult, UsageStore};

fn clip(s: &str) -> &str {
    match s.char_indices().nth(MAX_NAME) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn counts(r: &Row, from: usize) -> UsageCounts {
    UsageCounts {
        messages: unbig(r.get(from)),
        input_tokens: unbig(r.get(from + 1)),
        output_tokens: unbig(r.get(from + 2)),
        cost_nanos: unbig(r.get(from + 3)),
    }
}

fn day(r: &Row, idx: usize) -> u32 {
    let d: i32 = r.get(idx);
    d.max(0) as u32
}

/// Adds `c` to the user's (and the key's) counters inside `tx` (the quota
/// settlement of several instances charges and ends a reservation in one
/// transaction, see `cluster.rs`).
pub(super) async fn charge_in(
    tx: &Transaction<'_>,
    user_id: Uuid,
    day: u32,
    c: &Charge,
) -> StoreResult<()> {
    let (provider, model) = (clip(&c.provider), clip(&c.model));
    let d = c.counts();
    let n = [
        big(d.messages)?,
        big(d.input_tokens)?,
        big(d.output_tokens)?,
        big(d.cost_nanos)?,
    ];
    let day = day as i32;
    tx.exec(
        "INSERT INTO usage_daily (user_id, day, provider, model, messages, input_tokens, output_tokens, cost_nanos)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (user_id, day, provider, model) DO UPDATE SET
            messages = usage_daily.messages + excluded.messages,
            input_tokens = usage_daily.input_tokens + excluded.input_tokens,
            output_tokens = usage_daily.output_tokens + excluded.output_tokens,
            cost_nanos = usage_daily.cost_nanos + excluded.cost_nanos",
        &[&user_id, &day, &provider, &model, &n[0], &n[1], &n[2], &n[3]],
    )
    .await?;
    if let Some(key) = c.api_key {
        tx.exec(
            "INSERT INTO usage_key_daily (user_id, day, api_key_id, provider, model, messages, input_tokens, output_tokens, cost_nanos)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (user_id, day, api_key_id, provider, model) DO UPDATE SET
                messages = usage_key_daily.messages + excluded.messages,
                input_tokens = usage_key_daily.input_tokens + excluded.input_tokens,
                output_tokens = usage_key_daily.output_tokens + excluded.output_tokens,
                cost_nanos = usage_key_daily.cost_nanos + excluded.cost_nanos",
            &[&user_id, &day, &key, &provider, &model, &n[0], &n[1], &n[2], &n[3]],
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl UsageStore for PgStore {
    async fn charge_usage(&self, user_id: Uuid, day: u32, c: &Charge) -> StoreResult<()> {
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        charge_in(&tx, user_id, day, c).await?;
        commit(tx).await
    }

    async fn usage_by_key(
        &self,
        user_id: Option<Uuid>,
        from: u32,
        to: u32,
    ) -> StoreResult<Vec<KeyUsageRow>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT day, user_id, api_key_id, provider, model, messages, input_tokens, output_tokens, cost_nanos
                 FROM usage_key_daily
                 WHERE ($1::uuid IS NULL OR user_id = $1) AND day BETWEEN $2 AND $3
                 ORDER BY day, user_id, api_key_id, provider, model",
                &[&user_id, &(from as i32), &(to.min(i32::MAX as u32) as i32)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| KeyUsageRow {
                day: day(r, 0),
                user_id: r.get(1),
                api_key_id: r.get(2),
                provider: r.get(3),
                model: r.get(4),
                counts: counts(r, 5),
            })
            .collect())
    }

    async fn usage_of_user(&self, user_id: Uuid, from: u32, to: u32) -> StoreResult<Vec<UsageRow>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT day, user_id, provider, model, messages, input_tokens, output_tokens, cost_nanos
                 FROM usage_daily WHERE user_id = $1 AND day BETWEEN $2 AND $3
                 ORDER BY day, provider, model",
                &[&user_id, &(from as i32), &(to.min(i32::MAX as u32) as i32)],
            )
            .await?;
        Ok(rows.iter().map(usage_row).collect())
    }

    async fn usage_between(&self, from: u32, to: u32) -> StoreResult<Vec<UsageRow>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT day, user_id, provider, model, messages, input_tokens, output_tokens, cost_nanos
                 FROM usage_daily WHERE day BETWEEN $1 AND $2
                 ORDER BY day, user_id, provider, model",
                &[&(from as i32), &(to.min(i32::MAX as u32) as i32)],
            )
            .await?;
        Ok(rows.iter().map(usage_row).collect())
    }

    async fn usage_user_day(&self, user_id: Uuid, day: u32) -> StoreResult<UsageCounts> {
        let c = self.client().await?;
        let r = c
            .one(
                "SELECT coalesce(sum(messages), 0)::bigint, coalesce(sum(input_tokens), 0)::bigint,
                        coalesce(sum(output_tokens), 0)::bigint, coalesce(sum(cost_nanos), 0)::bigint
                 FROM usage_daily WHERE user_id = $1 AND day = $2",
                &[&user_id, &(day as i32)],
            )
            .await?;
        Ok(counts(&r, 0))
    }
}

fn usage_row(r: &Row) -> UsageRow {
    UsageRow {
        day: day(r, 0),
        user_id: r.get(1),
        provider: r.get(2),
        model: r.get(3),
        counts: counts(r, 4),
    }
}
