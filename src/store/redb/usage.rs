//! Usage tables in redb (see `store::usage`).

use redb::{ReadableDatabase, ReadableTable};
use uuid::Uuid;

use super::{Db, StoreResult, USAGE_BY_DAY, USAGE_DAILY, dec, enc};
use crate::store::usage::*;

fn clip(s: &str) -> &str {
    match s.char_indices().nth(MAX_NAME) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl Db {
    /// Adds one charge to both usage tables in one transaction.
    pub fn charge_usage(&self, user_id: Uuid, day: u32, c: &Charge) -> StoreResult<()> {
        let (provider, model) = (clip(&c.provider), clip(&c.model));
        let delta = c.counts();
        let u = user_id.as_u128();
        let tx = self.write()?;
        {
            let mut daily = tx.open_table(USAGE_DAILY)?;
            let mut counts: UsageCounts = daily
                .get((u, day, provider, model))?
                .map(|v| dec(v.value()))
                .transpose()?
                .unwrap_or_default();
            counts.add(&delta);
            let bytes = enc(&counts);
            daily.insert((u, day, provider, model), bytes.as_slice())?;
            tx.open_table(USAGE_BY_DAY)?
                .insert((day, u, provider, model), bytes.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// One user's rows for days `from..=to`.
    pub fn usage_of_user(&self, user_id: Uuid, from: u32, to: u32) -> StoreResult<Vec<UsageRow>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(USAGE_DAILY)?;
        let u = user_id.as_u128();
        let mut out = Vec::new();
        for r in t.range((u, from, "", "")..(u, to.saturating_add(1), "", ""))? {
            let (k, v) = r?;
            let (_, day, provider, model) = k.value();
            out.push(UsageRow {
                day,
                user_id,
                provider: provider.to_string(),
                model: model.to_string(),
                counts: dec(v.value())?,
            });
        }
        Ok(out)
    }

    /// Everyone's rows for days `from..=to`.
    pub fn usage_between(&self, from: u32, to: u32) -> StoreResult<Vec<UsageRow>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(USAGE_BY_DAY)?;
        let mut out = Vec::new();
        for r in t.range((from, 0u128, "", "")..(to.saturating_add(1), 0u128, "", ""))? {
            let (k, v) = r?;
            let (day, u, provider, model) = k.value();
            out.push(UsageRow {
                day,
                user_id: Uuid::from_u128(u),
                provider: provider.to_string(),
                model: model.to_string(),
                counts: dec(v.value())?,
            });
        }
        Ok(out)
    }

    /// A user's totals for one day, over all models.
    pub fn usage_user_day(&self, user_id: Uuid, day: u32) -> StoreResult<UsageCounts> {
        let mut total = UsageCounts::default();
        for r in self.usage_of_user(user_id, day, day)? {
            total.add(&r.counts);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_add_up_in_both_tables() {
        let dir = tempfile::tempdir().unwrap();
        let s = Db::open(dir.path()).unwrap();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let c = |p: &str, m: &str, i, o| Charge {
            provider: p.into(),
            model: m.into(),
            messages: 1,
            input_tokens: i,
            output_tokens: o,
            cost_nanos: i + o,
        };
        s.charge_usage(a, 20250101, &c("oa", "m1", 10, 20)).unwrap();
        s.charge_usage(a, 20250101, &c("oa", "m1", 1, 2)).unwrap();
        s.charge_usage(a, 20250101, &c("oa", "m2", 5, 5)).unwrap();
        s.charge_usage(a, 20250102, &c("an", "m1", 7, 7)).unwrap();
        s.charge_usage(b, 20250101, &c("oa", "m1", 100, 100))
            .unwrap();
        let day = s.usage_user_day(a, 20250101).unwrap();
        assert_eq!(
            (day.messages, day.input_tokens, day.output_tokens),
            (3, 16, 27)
        );
        assert_eq!(s.usage_of_user(a, 20250101, 20250102).unwrap().len(), 3);
        assert_eq!(s.usage_of_user(a, 20250102, 20250131).unwrap().len(), 1);
        let all = s.usage_between(20250101, 20250101).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all.iter().map(|r| r.counts.input_tokens).sum::<u64>(), 116);
        assert!(s.usage_between(20250103, 20251231).unwrap().is_empty());
    }
}
