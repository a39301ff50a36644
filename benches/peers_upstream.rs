//! The fake OpenAI-compatible upstream for `benches/peers.sh` (confab beside
//! LiteLLM and Open WebUI): confab's own test fake (`tests/it/common_upstream`),
//! served alone on a free port of 127.0.0.1 so that every product — and the direct
//! baseline — talks to the same upstream in one run.
//!
//! It only serves when `PEERS_UPSTREAM_SERVE=1` is set (a plain
//! `cargo bench` runs it as a no-op). Settings, from the environment:
//! `PEERS_UPSTREAM_TOKEN_DELAY_MS` (pause before each token, default 2),
//! `PEERS_UPSTREAM_HOLD_WORDS` (length of the reply of the `…+slow` models,
//! which pause 100 ms before each token so their streams stay open; default
//! 3,000 words, about five minutes).
//!
//! Models: `fake-model` answers ten words, one token each, with the fixed
//! per-token delay; `fake-model+slow` answers the long reply slowly. It
//! prints its OpenAI base URL (`http://127.0.0.1:PORT/openai/v1`) on one line
//! of stdout, then serves until its stdin closes or it is killed.

#[path = "../tests/it/common_upstream/mod.rs"]
mod common_upstream;

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Context;
use common_upstream::FakeUpstream;

const MODEL: &str = "fake-model";
const SLOW_MODEL: &str = "fake-model+slow";
/// Ten tokens: the fake streams one word (with its space) per token.
const REPLY: &str = "one two three four five six seven eight nine ten";

fn env_u64(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().with_context(|| format!("{name}={v:?}")),
        Err(_) => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    if std::env::var("PEERS_UPSTREAM_SERVE").as_deref() != Ok("1") {
        println!("peers_upstream: serves only for benches/peers.sh (PEERS_UPSTREAM_SERVE=1)");
        return Ok(());
    }
    let delay = Duration::from_millis(env_u64("PEERS_UPSTREAM_TOKEN_DELAY_MS", 2)?);
    let hold_words = env_u64("PEERS_UPSTREAM_HOLD_WORDS", 3_000)? as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("fake-upstream")
        .build()?;
    let up = rt.block_on(FakeUpstream::start());
    up.set_models(&[MODEL, SLOW_MODEL]);
    up.set_reply(REPLY);
    let long: Vec<String> = (0..hold_words).map(|i| format!("word{i}")).collect();
    up.set_reply_for(SLOW_MODEL, &long.join(" "));
    up.set_token_delay(delay);
    println!("{}", up.openai_base());
    std::io::stdout().flush()?;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(up);
    rt.shutdown_background();
    Ok(())
}
