//! Usage tables in redb (see `store::usage`).

use redb::{ReadableDatabase, ReadableTable};
use uuid::Uuid;

use super::{
    Db, StoreResult, USAGE_BY_DAY, USAGE_DAILY, USAGE_KEY_BY_DAY, USAGE_KEY_DAILY, dec, enc,
};
use crate::store::usage::*;

fn clip(s: &str) -> &str {
    match s.char_indices().nth(MAX_NAME) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
impl Db {
    fn charge_usage(&self, user_id: Uuid, day: u32, c: &Charge) -> StoreResult<()> {
        let charge = c.clone();
        self.apply_small(&[&super::batch::Small::Charge {
            user_id,
            day,
            charge,
        }])
        .map(|_| ())
    }
}

/// Adds one charge to both usage tables, and to both per-key tables when it
/// was made with an API key, within `tx` (one of a batch: see
/// [`super::batch`]).
pub(super) fn charge_usage_in(
    tx: &redb::WriteTransaction,
    user_id: Uuid,
    day: u32,
    c: &Charge,
) -> StoreResult<()> {
    let (provider, model) = (clip(&c.provider), clip(&c.model));
    let delta = c.counts();
    let u = user_id.as_u128();
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
        if let Some(key) = c.api_key {
            let k = key.as_u128();
            let mut by_key = tx.open_table(USAGE_KEY_DAILY)?;
            let mut counts: UsageCounts = by_key
                .get((u, day, k, provider, model))?
                .map(|v| dec(v.value()))
                .transpose()?
                .unwrap_or_default();
            counts.add(&delta);
            let bytes = enc(&counts);
            by_key.insert((u, day, k, provider, model), bytes.as_slice())?;
            tx.open_table(USAGE_KEY_BY_DAY)?
                .insert((day, u, k, provider, model), bytes.as_slice())?;
        }
    }
    Ok(())
}

impl Db {
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

    /// Usage per API key for days `from..=to`: one user's, or everyone's.
    pub fn usage_by_key(
        &self,
        user_id: Option<Uuid>,
        from: u32,
        to: u32,
    ) -> StoreResult<Vec<KeyUsageRow>> {
        let tx = self.db.begin_read()?;
        let mut out = Vec::new();
        let row = |day, u, k, provider: &str, model: &str, v: &[u8]| -> StoreResult<KeyUsageRow> {
            Ok(KeyUsageRow {
                day,
                user_id: Uuid::from_u128(u),
                api_key_id: Uuid::from_u128(k),
                provider: provider.to_string(),
                model: model.to_string(),
                counts: dec(v)?,
            })
        };
        match user_id {
            Some(user) => {
                let t = tx.open_table(USAGE_KEY_DAILY)?;
                let u = user.as_u128();
                let range = (u, from, 0u128, "", "")..(u, to.saturating_add(1), 0u128, "", "");
                for r in t.range(range)? {
                    let (k, v) = r?;
                    let (u, day, key, provider, model) = k.value();
                    out.push(row(day, u, key, provider, model, v.value())?);
                }
            }
            None => {
                let t = tx.open_table(USAGE_KEY_BY_DAY)?;
                let range =
                    (from, 0u128, 0u128, "", "")..(to.saturating_add(1), 0u128, 0u128, "", "");
                for r in t.range(range)? {
                    let (k, v) = r?;
                    let (day, u, key, provider, model) = k.value();
                    out.push(row(day, u, key, provider, model, v.value())?);
                }
            }
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
            api_key: None,
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

    #[test]
    fn charges_with_a_key_are_also_counted_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = Db::open(dir.path()).unwrap();
        let (a, b, k1, k2) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let c = |key: Option<Uuid>, i| Charge {
            provider: "oa".into(),
            model: "m".into(),
            messages: 1,
            input_tokens: i,
            output_tokens: 1,
            cost_nanos: 0,
            api_key: key,
        };
        s.charge_usage(a, 20250101, &c(Some(k1), 10)).unwrap();
        s.charge_usage(a, 20250101, &c(Some(k1), 5)).unwrap();
        s.charge_usage(a, 20250102, &c(Some(k2), 7)).unwrap();
        s.charge_usage(a, 20250102, &c(None, 100)).unwrap();
        s.charge_usage(b, 20250101, &c(Some(Uuid::now_v7()), 1))
            .unwrap();
        let mine = s.usage_by_key(Some(a), 20250101, 20250102).unwrap();
        assert_eq!(mine.len(), 2);
        assert_eq!(mine[0].api_key_id, k1);
        assert_eq!(mine[0].counts.input_tokens, 15);
        assert_eq!(mine[0].counts.messages, 2);
        assert_eq!(mine[1].api_key_id, k2);
        assert_eq!(
            s.usage_by_key(Some(a), 20250102, 20250102).unwrap().len(),
            1
        );
        let all = s.usage_by_key(None, 20250101, 20250101).unwrap();
        assert_eq!(all.len(), 2);
        // The totals still count every charge, with a key or without.
        assert_eq!(s.usage_user_day(a, 20250102).unwrap().input_tokens, 107);
    }
}
