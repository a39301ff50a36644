//! Hydration of raw index hits: the store is the truth, so each hit gets
//! its conversation title and text from there (a hit whose source is gone
//! or not the caller's is dropped), and a snippet with highlights.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::snippet::{self, Snippet};
use super::{Search, SearchError, SearchRequest, SearchResult, tokenizer};
use crate::store::SharedStore;

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
    /// Runs `req` (on the blocking pool: tantivy reads the disk) and
    /// hydrates its hits from `store`.
    pub async fn search_hits(
        self: &Arc<Self>,
        store: &SharedStore,
        req: SearchRequest,
    ) -> Result<Hits, SearchError> {
        let me = self.clone();
        let user = req.user_id;
        let res = match tokio::task::spawn_blocking(move || me.search(&req)).await {
            Ok(r) => r?,
            Err(e) => {
                return Err(SearchError::Io(std::io::Error::other(format!(
                    "search task failed: {e}"
                ))));
            }
        };
        let has_more = res.has_more;
        Ok(Hits {
            hits: hydrate(store, user, res).await,
            has_more,
        })
    }
}

/// Fills in titles, texts and snippets for `user`'s hits, dropping the
/// ones whose source is gone (the index lags a deletion by up to a moment)
/// or is not theirs.
pub async fn hydrate(store: &SharedStore, user: Uuid, res: SearchResult) -> Vec<Hit> {
    let mut analyzer = tokenizer::analyzer();
    let mut titles: HashMap<Uuid, Option<String>> = HashMap::new();
    let mut out = Vec::new();
    for h in res.hits {
        let title = match titles.get(&h.conversation_id) {
            Some(t) => t.clone(),
            None => {
                let t = store
                    .get_conversation(user, h.conversation_id)
                    .await
                    .ok()
                    .map(|c| c.title);
                titles.insert(h.conversation_id, t.clone());
                t
            }
        };
        let Some(title) = title else { continue };
        let text = match h.message_id {
            Some(mid) => match store.get_message(user, h.conversation_id, mid).await {
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
