//! The audit trail of the governance settings that live in the config file
//! (`[limits]`, the auth limiter, `[quota]`, `[[prices]]`,
//! `trusted_proxies`). They take effect at start-up, so that is when a
//! change is recorded: the settings in force are compared with the last
//! `config.limits` entry and, when they differ (or there is none yet), a
//! new entry lists them all and names what changed. Admin changes made
//! through the API (quotas, providers) are audited where they happen.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::Config;
use crate::store::audit_query::AuditFilter;
use crate::store::{AuditEntry, SharedStore, StoreResult};

/// The audit action of a change of the governance settings.
pub const ACTION: &str = "config.limits";
/// The actor name such entries carry (there is no user behind them).
pub const ACTOR: &str = "config";

/// The settings as `(group, value)` pairs, in a fixed order.
pub fn groups(cfg: &Config) -> Vec<(&'static str, String)> {
    let l = &cfg.limits;
    let per = |n: u32, b: u32| format!("{n}/min burst {b}");
    let opt = |v: Option<u64>| v.map_or("unlimited".to_string(), |n| n.to_string());
    let proxies = if cfg.trusted_proxies.is_empty() {
        "none".to_string()
    } else {
        cfg.trusted_proxies.join(" ")
    };
    let prices = if cfg.prices.is_empty() {
        "none".to_string()
    } else {
        cfg.prices
            .iter()
            .map(|p| {
                let who = p
                    .provider
                    .as_deref()
                    .map_or(String::new(), |x| format!("{x}/"));
                format!(
                    "{who}{}={}/{}",
                    p.model, p.input_per_million, p.output_per_million
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    vec![
        (
            "rate limits",
            if l.enabled { "on" } else { "off" }.to_string(),
        ),
        ("anon", per(l.anon_per_minute, l.anon_burst)),
        (
            "auth",
            per(cfg.auth.login_per_ip_per_minute, cfg.auth.login_burst),
        ),
        ("api", per(l.api_per_minute, l.api_burst)),
        ("chat", per(l.chat_per_minute, l.chat_burst)),
        (
            "concurrent answers",
            l.max_concurrent_generations.to_string(),
        ),
        ("tracked keys", l.max_tracked_keys.to_string()),
        (
            "quota",
            format!(
                "messages/day {} tokens/day {}",
                opt(cfg.quota.messages_per_day),
                opt(cfg.quota.tokens_per_day)
            ),
        ),
        ("trusted proxies", proxies),
        ("prices", prices),
    ]
}

/// Longest audit target written; the fingerprint always survives.
const MAX_TARGET: usize = 4000;

/// `changed: a, b | group value; …; group value #fingerprint`.
fn describe(now: &[(&'static str, String)], changed: &[&str]) -> String {
    let body = now
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let fp = fingerprint(now);
    let head = if changed.is_empty() {
        "in force".to_string()
    } else {
        format!("changed: {}", changed.join(", "))
    };
    let mut text = format!("{head} | {body}");
    if text.len() > MAX_TARGET {
        let mut cut = MAX_TARGET;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    format!("{text} #{fp}")
}

fn fingerprint(g: &[(&'static str, String)]) -> String {
    let mut h = Sha256::new();
    for (k, v) in g {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

/// The groups a previous entry's target listed (empty when unreadable).
fn parse_groups(target: &str) -> Vec<(String, String)> {
    let body = target.split_once(" | ").map_or("", |(_, b)| b);
    let body = body.rsplit_once(" #").map_or(body, |(b, _)| b);
    body.split("; ")
        .filter_map(|part| {
            groups_names()
                .iter()
                .find(|n| part.starts_with(&format!("{n} ")))
                .map(|n| (n.to_string(), part[n.len() + 1..].to_string()))
        })
        .collect()
}

fn groups_names() -> Vec<&'static str> {
    groups(&Config::default())
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// The newest `config.limits` entry, if any.
async fn last_entry(store: &SharedStore) -> StoreResult<Option<AuditEntry>> {
    let f = AuditFilter {
        action: Some(ACTION.into()),
        ..Default::default()
    };
    let mut before = None;
    loop {
        let (found, resume) = store.list_audit_filtered(before, 1, &f).await?;
        if let Some(e) = found.into_iter().next() {
            return Ok(Some(e));
        }
        match resume {
            Some(r) => before = Some(r),
            None => return Ok(None),
        }
    }
}

/// Writes a `config.limits` audit entry when the governance settings in
/// `cfg` differ from the last recorded ones (or none were recorded yet).
/// Returns whether it wrote one.
pub async fn record_if_changed(store: &SharedStore, cfg: &Config) -> StoreResult<bool> {
    let now = groups(cfg);
    let fp = fingerprint(&now);
    let last = last_entry(store).await?;
    let last_target = last.as_ref().and_then(|e| e.target.clone());
    if last_target
        .as_deref()
        .and_then(|t| t.rsplit_once(" #"))
        .is_some_and(|(_, old)| old == fp)
    {
        return Ok(false);
    }
    let changed: Vec<&str> = match &last_target {
        None => Vec::new(),
        Some(t) => {
            let old = parse_groups(t);
            now.iter()
                .filter(|(k, v)| !old.iter().any(|(ok, ov)| ok.as_str() == *k && ov == v))
                .map(|(k, _)| *k)
                .collect()
        }
    };
    store
        .append_audit(&AuditEntry {
            id: Uuid::now_v7(),
            at: crate::clock::now(),
            actor: None,
            actor_name: Some(ACTOR.into()),
            action: ACTION.into(),
            target: Some(describe(&now, &changed)),
            ip: None,
            user_agent: None,
            outcome: "ok".into(),
        })
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_and_reads_back_every_group() {
        let mut cfg = Config {
            prices: vec![crate::config::Price {
                provider: Some("oa".into()),
                model: "gpt-4o*".into(),
                input_per_million: 2.5,
                output_per_million: 10.0,
            }],
            ..Default::default()
        };
        let g = groups(&cfg);
        let text = describe(&g, &[]);
        assert!(text.starts_with("in force | rate limits on; anon 120/min burst 60;"));
        assert!(text.contains("prices oa/gpt-4o*=2.5/10"), "{text}");
        let back = parse_groups(&text);
        assert_eq!(back.len(), g.len(), "{back:?}");
        for ((k, v), (bk, bv)) in g.iter().zip(&back) {
            assert_eq!((*k, v.as_str()), (bk.as_str(), bv.as_str()));
        }
        cfg.quota.messages_per_day = Some(5);
        assert_ne!(fingerprint(&groups(&cfg)), fingerprint(&g));
    }
}
