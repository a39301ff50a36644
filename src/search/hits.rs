//! Hydration of raw index hits: the store is the truth, so each hit gets
//! its conversation title and text from there (a hit whose source is gone
//! or not the caller's is dropped), and a snippet with highlights.

use std::collections::HashMap;

use uuid::Uuid;

use super::snippet::{self, Snippet};
use super::{Search, SearchError, SearchRequest, SearchResult, tokenizer};
use crate::store::Store;

/// A hit as the caller sees it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub conversation_id: Uuid,
    pub conversation_title: String,
    /// None for a match on the conversation's title.
    pub message_id: Option<Uuid>,
    /// user | assistant | title
    pub role: String,
    pub created_at: i64,
    pub snippet: Snippet,
}

/// One page of hydrated hits.
pub struct Hits {
    pub hits: Vec<Hit>,
    pub has_more: bool,
}

impl Search {
    /// Runs `req` and hydrates its hits from `store` (blocking: call it off
    /// the async workers).
    pub fn search_hits(&self, store: &Store, req: &SearchRequest) -> Result<Hits, SearchError> {
        let res = self.search(req)?;
        let has_more = res.has_more;
        Ok(Hits {
            hits: hydrate(store, req.user_id, res),
            has_more,
        })
    }
}

/// Fills in titles, texts and snippets for `user`'s hits, dropping the
/// ones whose source is gone (the index lags a deletion by up to a moment)
/// or is not theirs.
pub fn hydrate(store: &Store, user: Uuid, res: SearchResult) -> Vec<Hit> {
    let mut analyzer = tokenizer::analyzer();
    let mut titles: HashMap<Uuid, Option<String>> = HashMap::new();
    let mut out = Vec::new();
    for h in res.hits {
        let title = titles
            .entry(h.conversation_id)
            .or_insert_with(|| {
                store
                    .get_conversation(user, h.conversation_id)
                    .ok()
                    .map(|c| c.title)
            })
            .clone();
        let Some(title) = title else { continue };
        let text = match h.message_id {
            Some(mid) => match store.get_message(user, h.conversation_id, mid) {
                Ok(m) => m.content,
                Err(_) => continue,
            },
            None => title.clone(),
        };
        out.push(Hit {
            conversation_id: h.conversation_id,
            conversation_title: title,
            message_id: h.message_id,
            role: h.role,
            created_at: h.created_at,
            snippet: snippet::make(&mut analyzer, &text, &res.terms, &res.prefixes),
        });
    }
    out
}
