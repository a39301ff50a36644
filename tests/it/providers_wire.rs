//! Every provider against the fake upstream over real TCP: each scripted
//! behaviour must give the exact text, usage and error variant/code.

use crate::common_upstream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common_upstream::{Dialect, FakeUpstream};
use confab::providers::{
    AnthropicProvider, ChatEvent, ChatMessage, ChatRequest, ENDED_EARLY, LocalProbe,
    OllamaProvider, OpenAiProvider, Provider, ProviderConfig, ProviderError, ProviderKind,
    ProviderOptions, Registry, RetryPolicy, default_client, detect_local_with, from_env_with,
};
use futures::StreamExt;

/// Long enough that a stalled test machine (CPU steal of 50-90% has been seen)
/// never fakes a timeout between chunks that the fake sends promptly.
const IDLE: Duration = Duration::from_secs(1);
const KEY: &str = "sk-test-configured-key-1234567890";
const DIALECTS: [Dialect; 3] = [Dialect::OpenAi, Dialect::Anthropic, Dialect::Ollama];

fn options() -> ProviderOptions {
    ProviderOptions {
        idle_timeout: IDLE,
        retry: RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        },
        ..Default::default()
    }
}

fn provider(fake: &FakeUpstream, d: Dialect) -> Arc<dyn Provider> {
    let client = default_client();
    let key = Some(KEY.to_string());
    match d {
        Dialect::OpenAi => Arc::new(
            OpenAiProvider::new("fake-openai", &fake.openai_base(), key, client)
                .with_options(options()),
        ),
        Dialect::Anthropic => Arc::new(
            AnthropicProvider::new("fake-anthropic", &fake.anthropic_base(), key, client)
                .with_options(options()),
        ),
        Dialect::Ollama => Arc::new(
            OllamaProvider::new("fake-ollama", &fake.ollama_base(), key, client)
                .with_options(options()),
        ),
    }
}

fn request(model: &str) -> ChatRequest {
    let mut req = ChatRequest::new(
        model,
        vec![
            ChatMessage::user("What is a crab?"),
            ChatMessage::assistant("A crustacean."),
            ChatMessage::user("Tell me more, please."),
        ],
    );
    req.system = Some("You are terse.".into());
    req
}

/// Words the fake counts as input tokens for [`request`].
const REQUEST_WORDS: u64 = 3 + 4 + 2 + 4;

#[derive(Debug, Default)]
struct Outcome {
    text: String,
    usage: Option<(u64, u64)>,
    done: Option<String>,
    /// Tool-call pieces, in order.
    tool_calls: Vec<confab::providers::ToolCallDelta>,
    error: Option<ProviderError>,
    /// The error came from `stream()` itself, before any body byte.
    early: bool,
}

async fn run(p: &dyn Provider, req: ChatRequest) -> Outcome {
    let mut out = Outcome::default();
    let mut stream = match p.stream(req).await {
        Ok(s) => s,
        Err(e) => {
            out.error = Some(e);
            out.early = true;
            return out;
        }
    };
    while let Some(item) = stream.next().await {
        assert!(
            out.error.is_none() && out.done.is_none(),
            "an item after the end: {item:?}"
        );
        match item {
            Ok(ChatEvent::Delta(t)) => {
                assert!(!t.is_empty(), "empty delta");
                out.text.push_str(&t);
            }
            Ok(ChatEvent::Usage {
                input_tokens,
                output_tokens,
            }) => {
                assert!(out.usage.is_none(), "two usage events");
                out.usage = Some((input_tokens, output_tokens));
            }
            Ok(ChatEvent::Done { finish_reason }) => out.done = Some(finish_reason),
            Ok(ChatEvent::ToolCall(t)) => out.tool_calls.push(t),
            Err(e) => out.error = Some(e),
        }
    }
    out
}

async fn run_model(fake: &FakeUpstream, d: Dialect, model: &str) -> Outcome {
    run(provider(fake, d).as_ref(), request(model)).await
}

fn assert_complete(o: &Outcome, text: &str, d: Dialect) {
    assert_eq!(o.error, None, "{d:?}");
    assert_eq!(o.text, text, "{d:?}");
    let output = common_upstream::tokens(text).len() as u64;
    assert_eq!(o.usage, Some((REQUEST_WORDS, output)), "{d:?}");
    assert_eq!(o.done.as_deref(), Some("stop"), "{d:?}");
}

#[tokio::test]
async fn complete_answer_every_provider() {
    let fake = FakeUpstream::start().await;
    for d in DIALECTS {
        let o = run_model(&fake, d, "fake-model").await;
        assert_complete(&o, common_upstream::DEFAULT_REPLY, d);
    }
}

#[tokio::test]
async fn custom_reply_and_token_delay() {
    let fake = FakeUpstream::start().await;
    fake.set_reply("Short and sweet.");
    fake.set_token_delay(Duration::from_millis(20));
    fake.set_reply_for("special", "Only for special.");
    for d in DIALECTS {
        let started = Instant::now();
        let o = run_model(&fake, d, "fake-model").await;
        assert_complete(&o, "Short and sweet.", d);
        assert!(started.elapsed() >= Duration::from_millis(60), "{d:?}");
        let o = run_model(&fake, d, "special").await;
        assert_complete(&o, "Only for special.", d);
        let o = run_model(&fake, d, "fake-model+echo").await;
        assert_complete(&o, "Tell me more, please.", d);
    }
}

#[tokio::test]
async fn every_byte_its_own_read() {
    let fake = FakeUpstream::start().await;
    fake.set_reply("Split me, byte by byte.");
    for d in DIALECTS {
        let o = run_model(&fake, d, "split-bytes").await;
        assert_complete(&o, "Split me, byte by byte.", d);
    }
}

#[tokio::test]
async fn utf8_characters_cut_across_reads() {
    let fake = FakeUpstream::start().await;
    for d in DIALECTS {
        let o = run_model(&fake, d, "utf8-split").await;
        assert_complete(&o, common_upstream::UTF8_REPLY, d);
        let o = run_model(&fake, d, "utf8-split+split-bytes+crlf").await;
        assert_complete(&o, common_upstream::UTF8_REPLY, d);
    }
}

#[tokio::test]
async fn crlf_line_endings_and_comments() {
    let fake = FakeUpstream::start().await;
    for d in DIALECTS {
        for model in ["crlf", "comments", "crlf+comments"] {
            let o = run_model(&fake, d, model).await;
            assert_complete(&o, common_upstream::DEFAULT_REPLY, d);
        }
    }
}

#[tokio::test]
async fn slow_tokens_stay_under_the_idle_timeout() {
    // The timeout is per chunk, not per answer: five tokens 400 ms apart take
    // 2 s in all, past the 1 s idle timeout, and must still arrive whole. Each
    // gap keeps 600 ms to spare; the three dialects run side by side.
    let fake = FakeUpstream::start().await;
    fake.set_reply("one two three four five");
    fake.set_token_delay(Duration::from_millis(400));
    let runs = DIALECTS.map(|d| {
        let p = provider(&fake, d);
        async move {
            let started = Instant::now();
            let o = run(p.as_ref(), request("slow")).await;
            (d, started.elapsed(), o)
        }
    });
    for (d, elapsed, o) in futures::future::join_all(runs).await {
        assert_complete(&o, "one two three four five", d);
        assert!(elapsed > IDLE, "{d:?}: {elapsed:?}");
    }
}

#[tokio::test]
async fn error_mid_stream_keeps_the_partial_text() {
    let fake = FakeUpstream::start().await;
    let partial = common_upstream::partial(common_upstream::DEFAULT_REPLY);
    for (d, status, message) in [
        (Dialect::OpenAi, 500, common_upstream::OPENAI_MIDSTREAM),
        (
            Dialect::Anthropic,
            529,
            common_upstream::ANTHROPIC_MIDSTREAM,
        ),
        (Dialect::Ollama, 500, common_upstream::OLLAMA_MIDSTREAM),
    ] {
        let o = run_model(&fake, d, "error-midstream").await;
        assert_eq!(o.text, partial, "{d:?}");
        assert!(!o.early);
        assert_eq!(o.done, None);
        let e = o.error.expect("an error");
        assert_eq!(
            e,
            ProviderError::Upstream {
                status,
                message: message.into()
            },
            "{d:?}"
        );
        assert_eq!(e.code(), "PROVIDER_ERROR");
    }
}

#[tokio::test]
async fn rate_limited_carries_retry_after_without_retrying() {
    let fake = FakeUpstream::start().await;
    for d in DIALECTS {
        fake.clear_requests();
        let o = run_model(&fake, d, "429").await;
        assert!(o.early);
        let e = o.error.expect("an error");
        assert!(
            matches!(
                e,
                ProviderError::RateLimited {
                    retry_after_secs: Some(7),
                    ..
                }
            ),
            "{d:?}: {e:?}"
        );
        assert_eq!(e.code(), "RATE_LIMITED");
        assert_eq!(e.retry_after_secs(), Some(7));
        assert_eq!(
            fake.chat_requests().len(),
            1,
            "{d:?}: a long Retry-After is not waited out"
        );
    }
}

#[tokio::test]
async fn short_retry_after_is_retried_once() {
    let fake = FakeUpstream::start().await;
    for d in DIALECTS {
        fake.clear_requests();
        let o = run_model(&fake, d, "429-short").await;
        let e = o.error.expect("an error");
        assert_eq!(e.code(), "RATE_LIMITED", "{d:?}");
        assert_eq!(e.retry_after_secs(), Some(1));
        assert_eq!(fake.chat_requests().len(), 2, "{d:?}");
    }
}

#[tokio::test]
async fn refused_key_is_not_echoed() {
    let fake = FakeUpstream::start().await;
    for d in DIALECTS {
        fake.clear_requests();
        let o = run_model(&fake, d, "401").await;
        assert!(o.early);
        let e = o.error.expect("an error");
        assert!(matches!(e, ProviderError::KeyRejected(_)), "{d:?}: {e:?}");
        assert_eq!(e.code(), "PROVIDER_ERROR");
        let msg = e.to_string();
        assert!(msg.contains("refused the API key"), "{msg}");
        assert!(!msg.contains("sk-te"), "{d:?} leaks the key: {msg}");
        assert!(!msg.contains("7890"), "{d:?} leaks the key: {msg}");
        assert_eq!(fake.chat_requests().len(), 1, "{d:?}: 401 is not retried");
    }
}

#[tokio::test]
async fn server_error_is_retried_then_reported_with_its_message() {
    let fake = FakeUpstream::start().await;
    for (d, message) in [
        (Dialect::OpenAi, common_upstream::OPENAI_500),
        (Dialect::Anthropic, common_upstream::ANTHROPIC_500),
        (Dialect::Ollama, common_upstream::OLLAMA_500),
    ] {
        fake.clear_requests();
        let o = run_model(&fake, d, "500").await;
        assert!(o.early);
        assert_eq!(
            o.error,
            Some(ProviderError::Upstream {
                status: 500,
                message: message.into()
            }),
            "{d:?}"
        );
        assert_eq!(fake.chat_requests().len(), 3, "{d:?}: three attempts");
    }
}

#[tokio::test]
async fn overload_before_the_first_byte_is_retried_transparently() {
    let fake = FakeUpstream::start().await;
    for d in DIALECTS {
        fake.clear_requests();
        fake.fail_next(2);
        let o = run_model(&fake, d, "fake-model").await;
        assert_complete(&o, common_upstream::DEFAULT_REPLY, d);
        assert_eq!(fake.chat_requests().len(), 3, "{d:?}");
    }
}

#[tokio::test]
async fn connection_reset_mid_stream() {
    let fake = FakeUpstream::start().await;
    let partial = common_upstream::partial(common_upstream::DEFAULT_REPLY);
    for d in DIALECTS {
        fake.clear_requests();
        let o = run_model(&fake, d, "reset").await;
        assert_eq!(o.text, partial, "{d:?}");
        let e = o.error.expect("an error");
        assert!(matches!(e, ProviderError::Protocol(_)), "{d:?}: {e:?}");
        assert_eq!(e.code(), "PROVIDER_ERROR");
        assert_eq!(
            fake.chat_requests().len(),
            1,
            "{d:?}: never retried after the first byte"
        );
    }
}

#[tokio::test]
async fn stall_hits_the_idle_timeout() {
    let fake = FakeUpstream::start().await;
    let partial = common_upstream::partial(common_upstream::DEFAULT_REPLY);
    for d in DIALECTS {
        let started = Instant::now();
        let o = run_model(&fake, d, "stall").await;
        let took = started.elapsed();
        assert_eq!(o.text, partial, "{d:?}");
        let e = o.error.expect("an error");
        assert!(matches!(e, ProviderError::Timeout(_)), "{d:?}: {e:?}");
        assert_eq!(e.code(), "PROVIDER_TIMEOUT");
        assert!(e.to_string().contains("for 1 s"), "{e}");
        assert!(
            took >= IDLE && took < Duration::from_secs(4),
            "{d:?}: {took:?}"
        );
    }
}

#[tokio::test]
async fn no_headers_hits_the_idle_timeout() {
    let fake = FakeUpstream::start().await;
    for d in DIALECTS {
        let o = run_model(&fake, d, "stall-headers").await;
        assert!(o.early, "{d:?}");
        assert_eq!(o.error.as_ref().map(|e| e.code()), Some("PROVIDER_TIMEOUT"));
    }
}

#[tokio::test]
async fn stream_ending_without_terminal_event() {
    let fake = FakeUpstream::start().await;
    let partial = common_upstream::partial(common_upstream::DEFAULT_REPLY);
    for d in DIALECTS {
        let o = run_model(&fake, d, "truncated").await;
        assert_eq!(o.text, partial, "{d:?}");
        assert_eq!(
            o.error,
            Some(ProviderError::Protocol(ENDED_EARLY.into())),
            "{d:?}"
        );
    }
}

#[tokio::test]
async fn malformed_event_is_a_protocol_error() {
    let fake = FakeUpstream::start().await;
    for d in DIALECTS {
        let o = run_model(&fake, d, "garbage").await;
        let e = o.error.expect("an error");
        assert!(matches!(e, ProviderError::Protocol(_)), "{d:?}: {e:?}");
    }
}

#[tokio::test]
async fn unknown_model() {
    let fake = FakeUpstream::start().await;
    for d in DIALECTS {
        let o = run_model(&fake, d, "missing-model").await;
        let e = o.error.expect("an error");
        assert!(matches!(e, ProviderError::ModelNotFound(_)), "{d:?}: {e:?}");
        assert_eq!(e.code(), "MODEL_NOT_FOUND");
        assert!(e.to_string().contains("missing-model"), "{e}");
    }
}

#[tokio::test]
async fn unreachable_provider() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = default_client();
    let started = Instant::now();
    let providers: Vec<Arc<dyn Provider>> = vec![
        Arc::new(
            OpenAiProvider::new("gone", &format!("http://{addr}/v1"), None, client.clone())
                .with_options(options()),
        ),
        Arc::new(
            AnthropicProvider::new("gone", &format!("http://{addr}"), None, client.clone())
                .with_options(options()),
        ),
        Arc::new(
            OllamaProvider::new("gone", &format!("http://{addr}"), None, client)
                .with_options(options()),
        ),
    ];
    for p in providers {
        let o = run(p.as_ref(), request("fake-model")).await;
        let e = o.error.expect("an error");
        assert!(matches!(e, ProviderError::Unreachable(_)), "{e:?}");
        assert_eq!(e.code(), "PROVIDER_UNREACHABLE");
        assert!(e.to_string().contains("connection refused"), "{e}");
        assert!(
            !e.to_string().contains("127.0.0.1"),
            "no address in user text: {e}"
        );
        let e = p.models().await.unwrap_err();
        assert_eq!(e.code(), "PROVIDER_UNREACHABLE");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn wire_details_of_each_request() {
    let fake = FakeUpstream::start().await;
    let mut req = request("fake-model");
    req.max_tokens = Some(256);
    req.temperature = Some(0.5);

    run(provider(&fake, Dialect::OpenAi).as_ref(), req.clone()).await;
    let r = fake.last_request().unwrap();
    assert_eq!(r.path, "/openai/v1/chat/completions");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(r.body["stream"], true);
    assert_eq!(r.body["stream_options"]["include_usage"], true);
    assert_eq!(r.body["max_tokens"], 256);
    assert_eq!(r.body["temperature"], 0.5);
    assert_eq!(r.body["messages"][0]["role"], "system");
    assert_eq!(r.body["messages"][0]["content"], "You are terse.");
    assert_eq!(r.body["messages"].as_array().unwrap().len(), 4);

    run(provider(&fake, Dialect::Anthropic).as_ref(), req.clone()).await;
    let r = fake.last_request().unwrap();
    assert_eq!(r.path, "/anthropic/v1/messages");
    assert_eq!(r.header("x-api-key"), Some(KEY));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.body["system"], "You are terse.");
    assert_eq!(r.body["max_tokens"], 256);
    assert_eq!(r.body["stream"], true);
    let msgs = r.body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert!(msgs.iter().all(|m| m["role"] != "system"));

    let mut no_max = req.clone();
    no_max.max_tokens = None;
    run(provider(&fake, Dialect::Anthropic).as_ref(), no_max).await;
    assert_eq!(fake.last_request().unwrap().body["max_tokens"], 4096);

    run(provider(&fake, Dialect::Ollama).as_ref(), req).await;
    let r = fake.last_request().unwrap();
    assert_eq!(r.path, "/ollama/api/chat");
    assert_eq!(r.body["stream"], true);
    assert_eq!(r.body["options"]["num_predict"], 256);
    assert_eq!(r.body["messages"][0]["role"], "system");
}

#[tokio::test]
async fn user_key_replaces_the_configured_one() {
    let fake = FakeUpstream::start().await;
    for d in DIALECTS {
        let mut req = request("fake-model");
        req.api_key_override = Some("sk-user-own-key-000000000".into());
        let o = run(provider(&fake, d).as_ref(), req).await;
        assert_eq!(o.error, None, "{d:?}");
        let r = fake.last_request().unwrap();
        let sent = r.header("x-api-key").map(str::to_string).or_else(|| {
            r.header("authorization")
                .map(|v| v.trim_start_matches("Bearer ").to_string())
        });
        assert_eq!(sent.as_deref(), Some("sk-user-own-key-000000000"), "{d:?}");

        let mut req = request("fake-model");
        req.api_key_override = Some(common_upstream::REJECTED_KEY.into());
        let o = run(provider(&fake, d).as_ref(), req).await;
        let e = o.error.expect("refused");
        assert_eq!(e.code(), "PROVIDER_ERROR");
        assert!(!e.to_string().contains("sk-re"), "{e}");
    }
}

#[tokio::test]
async fn model_lists() {
    let fake = FakeUpstream::start().await;
    fake.set_models(&["claude-fake-1", "alpha"]);
    for (d, display) in [
        (Dialect::OpenAi, "claude-fake-1"),
        (Dialect::Anthropic, "Claude Fake 1"),
        (Dialect::Ollama, "claude-fake-1"),
    ] {
        let models = provider(&fake, d).models().await.unwrap();
        let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
        assert!(
            ids.contains(&"alpha") && ids.contains(&"claude-fake-1"),
            "{d:?}: {ids:?}"
        );
        let claude = models.iter().find(|m| m.id == "claude-fake-1").unwrap();
        assert_eq!(claude.display_name, display, "{d:?}");
    }
    // Ollama lists from /api/tags, then asks /api/show about each model
    // (for its context window): the listing itself is the tags request.
    let ollama: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.dialect == Some(Dialect::Ollama))
        .map(|r| r.path)
        .collect();
    assert_eq!(ollama[0], "/ollama/api/tags");
    assert!(
        ollama[1..].iter().all(|p| p == "/ollama/api/show"),
        "{ollama:?}"
    );
    let anthropic = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/anthropic/v1/models")
        .unwrap();
    assert_eq!(anthropic.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(anthropic.header("x-api-key"), Some(KEY));
}

#[tokio::test]
async fn provider_kinds() {
    let fake = FakeUpstream::start().await;
    assert_eq!(
        provider(&fake, Dialect::OpenAi).kind(),
        ProviderKind::Openai
    );
    assert_eq!(
        provider(&fake, Dialect::Anthropic).kind(),
        ProviderKind::Anthropic
    );
    assert_eq!(
        provider(&fake, Dialect::Ollama).kind(),
        ProviderKind::Ollama
    );
}

#[tokio::test]
async fn registry_merges_models_and_resolves() {
    let fake = FakeUpstream::start().await;
    fake.set_models(&["fake-model", "fake-model-2"]);
    let registry = Registry::new(default_client(), options());
    registry
        .add(
            ProviderConfig::new(ProviderKind::Anthropic, "claude", fake.anthropic_base())
                .with_api_key(KEY),
        )
        .unwrap();
    registry
        .add(
            ProviderConfig::new(ProviderKind::Ollama, "local", fake.ollama_base())
                .with_models(vec!["fake-model-2".into(), "not-listed".into()]),
        )
        .unwrap();
    let dup = ProviderConfig::new(ProviderKind::Ollama, "local", fake.ollama_base());
    assert!(registry.add(dup).is_err());
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_addr = gone.local_addr().unwrap();
    drop(gone);
    registry
        .add(ProviderConfig::new(
            ProviderKind::Openai,
            "down",
            format!("http://{gone_addr}/v1"),
        ))
        .unwrap();

    assert!(
        registry.models().iter().all(|m| m.provider == "local"),
        "only the allowlist before refresh"
    );
    registry.refresh().await;

    let models = registry.models();
    let pairs: Vec<(&str, &str)> = models
        .iter()
        .map(|m| (m.provider.as_str(), m.id.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("claude", "fake-model"),
            ("claude", "fake-model-2"),
            ("local", "fake-model-2"),
            ("local", "not-listed"),
        ]
    );
    assert_eq!(models[0].display_name, "Fake Model");

    let (name, p) = registry.resolve_model("fake-model-2").unwrap();
    assert_eq!(name, "claude");
    assert_eq!(p.kind(), ProviderKind::Anthropic);
    let (name, _) = registry.resolve_model("not-listed").unwrap();
    assert_eq!(name, "local");
    assert!(registry.resolve_model("fake-model-3").is_none());
    assert!(
        registry.resolve_model_in("local", "fake-model").is_none(),
        "allowlist"
    );
    assert!(registry.resolve_model_in("local", "fake-model-2").is_some());

    let list = registry.list();
    let claude = list.iter().find(|p| p.name == "claude").unwrap();
    assert!(claude.status.reachable && claude.status.last_error.is_none());
    assert!(claude.status.checked_at.is_some());
    assert!(claude.has_api_key);
    let down = list.iter().find(|p| p.name == "down").unwrap();
    assert!(!down.status.reachable);
    assert_eq!(down.status.last_error_code, Some("PROVIDER_UNREACHABLE"));
    assert!(
        down.status
            .last_error
            .as_deref()
            .unwrap()
            .contains("cannot reach")
    );
    let json = serde_json::to_string(&list).unwrap();
    assert!(!json.contains(KEY), "no key in the listing");

    // A stream through what the registry resolved.
    let o = run(p.as_ref(), request("fake-model-2")).await;
    assert_complete(&o, common_upstream::DEFAULT_REPLY, Dialect::Anthropic);

    registry.set_enabled("claude", false).unwrap();
    assert!(registry.get("claude").is_none());
    assert_eq!(registry.resolve_model("fake-model-2").unwrap().0, "local");
    assert!(registry.remove("local"));
    assert!(registry.resolve_model("fake-model-2").is_none());
}

#[tokio::test]
async fn local_detection_and_environment() {
    let fake = FakeUpstream::start().await;
    let client = default_client();
    let probe = LocalProbe {
        ollama_base: fake.ollama_base(),
        lmstudio_base: fake.openai_base(),
        timeout: Duration::from_millis(500),
    };
    let found = detect_local_with(&client, &probe).await;
    let names: Vec<(&str, ProviderKind)> =
        found.iter().map(|c| (c.name.as_str(), c.kind)).collect();
    assert_eq!(
        names,
        [
            ("ollama", ProviderKind::Ollama),
            ("lmstudio", ProviderKind::Openai)
        ]
    );
    assert_eq!(found[0].base_url, fake.ollama_base());
    assert_eq!(found[1].base_url, fake.openai_base());

    // Nothing listening, and something that is not Ollama: neither is found.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_addr = gone.local_addr().unwrap();
    drop(gone);
    let probe = LocalProbe {
        ollama_base: format!("{}/nothing-here", fake.base_url()),
        lmstudio_base: format!("http://{gone_addr}/v1"),
        timeout: Duration::from_millis(500),
    };
    assert!(detect_local_with(&client, &probe).await.is_empty());

    let env = from_env_with(|k| match k {
        "OPENAI_API_KEY" => Some("sk-env-openai".into()),
        "ANTHROPIC_API_KEY" => Some("sk-ant-env".into()),
        _ => None,
    });
    assert_eq!(env.len(), 2);
    assert_eq!(
        (env[0].kind, env[0].base_url.as_str()),
        (ProviderKind::Openai, "https://api.openai.com/v1")
    );
    assert_eq!(
        (env[1].kind, env[1].base_url.as_str()),
        (ProviderKind::Anthropic, "https://api.anthropic.com")
    );

    let registry = Registry::new(client, options());
    registry
        .add(ProviderConfig::new(
            ProviderKind::Ollama,
            "ollama",
            fake.ollama_base(),
        ))
        .unwrap();
    let added = registry.add_missing(found);
    assert_eq!(added, ["lmstudio"], "a configured name is not replaced");
    assert!(!format!("{:?}", env[0]).contains("sk-env"));
}

#[tokio::test]
async fn many_concurrent_streams() {
    let fake = FakeUpstream::start().await;
    fake.set_token_delay(Duration::from_millis(5));
    let mut tasks = Vec::new();
    for i in 0..60 {
        let p = provider(&fake, DIALECTS[i % 3]);
        tasks.push(tokio::spawn(async move {
            run(p.as_ref(), request("fake-model")).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let o = t.await.unwrap();
        assert_complete(&o, common_upstream::DEFAULT_REPLY, DIALECTS[i % 3]);
    }
}

#[tokio::test]
async fn refresh_loop_picks_up_local_servers() {
    let fake = FakeUpstream::start().await;
    let registry = Arc::new(Registry::new(default_client(), options()));
    let probe = LocalProbe {
        ollama_base: fake.ollama_base(),
        lmstudio_base: fake.openai_base(),
        timeout: Duration::from_millis(500),
    };
    let task = registry.spawn_refresh_loop(Duration::from_secs(3600), Some(probe));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ready =
            registry.list().len() == 2 && registry.list().iter().all(|p| p.status.reachable);
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "local providers never appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (name, _) = registry.resolve_model("fake-model").unwrap();
    assert_eq!(name, "ollama");
    assert_eq!(registry.models().len(), 4);
    task.abort();
}

/// Issue 13 item 6: a provider that redirects to another host. `hop` is an
/// upstream that answers every request with `status` to the same path on
/// `elsewhere` (except `/to-self/…`, redirected within its own origin to
/// `/here/…`, which it answers itself); both record what they receive.
mod redirects {
    use super::*;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    use std::sync::Mutex;

    const SECRET_TEXT: &str = "my confidential conversation 7f3a";

    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<(String, HeaderMap, String)>>>);

    impl Seen {
        fn all(&self) -> Vec<(String, HeaderMap, String)> {
            self.0.lock().unwrap().clone()
        }
    }

    /// Starts a recording server; with `redirect_to`, it redirects instead
    /// of answering (but for the same-origin paths above).
    async fn start(redirect_to: Option<(String, u16)>) -> (String, Seen) {
        let seen = Seen::default();
        let rec = seen.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let rec = rec.clone();
            let redirect_to = redirect_to.clone();
            async move {
                let path = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default();
                if let Some(rest) = path.strip_prefix("/to-self") {
                    let loc = format!("/here{rest}");
                    return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, loc)])
                        .into_response();
                }
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                rec.0.lock().unwrap().push((
                    path.clone(),
                    parts.headers,
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                match (&redirect_to, path.starts_with("/here")) {
                    (Some((target, status)), false) => (
                        StatusCode::from_u16(*status).unwrap(),
                        [(header::LOCATION, format!("{target}{path}"))],
                    )
                        .into_response(),
                    _ => axum::Json(serde_json::json!({
                        "object": "list",
                        "data": [{"id": "m", "object": "model"}],
                        "models": [{"name": "m", "model": "m"}],
                    }))
                    .into_response(),
                }
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        (base, seen)
    }

    fn kind(d: Dialect) -> ProviderKind {
        match d {
            Dialect::OpenAi => ProviderKind::Openai,
            Dialect::Anthropic => ProviderKind::Anthropic,
            Dialect::Ollama => ProviderKind::Ollama,
        }
    }

    fn base(root: &str, d: Dialect) -> String {
        match d {
            Dialect::OpenAi => format!("{root}/v1"),
            _ => root.to_string(),
        }
    }

    fn opts(cross_origin: bool) -> ProviderOptions {
        ProviderOptions {
            retry: RetryPolicy::none(),
            cross_origin_redirects: cross_origin,
            ..options()
        }
    }

    fn carries_credentials(h: &HeaderMap) -> bool {
        ["authorization", "x-api-key", "api-key", "cookie"]
            .iter()
            .any(|n| h.contains_key(*n))
            || h.values()
                .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(KEY))
    }

    #[tokio::test]
    async fn a_redirect_to_another_host_is_not_followed_with_the_key_or_the_conversation() {
        for status in [307, 302] {
            let (elsewhere, other_host_saw) = start(None).await;
            let (hop, hop_saw) = start(Some((elsewhere, status))).await;
            for d in DIALECTS {
                let config = ProviderConfig::new(kind(d), format!("p-{d:?}"), base(&hop, d))
                    .with_api_key(KEY);
                let p = confab::providers::build_provider(&config, default_client(), opts(false));
                // A chat.
                let req = ChatRequest::new("m", vec![ChatMessage::user(SECRET_TEXT)]);
                let err = match p.stream(req).await {
                    Err(e) => e,
                    Ok(s) => {
                        let events: Vec<_> = s.collect().await;
                        events
                            .into_iter()
                            .find_map(Result::err)
                            .expect("the chat fails")
                    }
                };
                assert!(
                    matches!(err, ProviderError::Redirected(_)),
                    "{d:?} {status}: {err:?}"
                );
                assert_eq!(err.code(), "PROVIDER_ERROR");
                assert!(err.to_string().contains("another host"), "{err}");
                assert!(
                    !err.to_string().contains("127.0.0.1"),
                    "no host for users: {err}"
                );

                // The background model refresh, through the registry.
                let reg = Registry::new(default_client(), opts(false));
                reg.add(config.clone()).unwrap();
                reg.refresh().await;
                let st = reg.status(&config.name).unwrap();
                assert_eq!(st.last_error_code, Some("PROVIDER_ERROR"), "{st:?}");
                assert!(
                    st.last_error
                        .as_deref()
                        .is_some_and(|m| m.contains("another host")),
                    "{d:?}: {st:?}"
                );
            }
            // The redirecting host got the key (it is the configured one)…
            assert!(hop_saw.all().iter().any(|(_, h, _)| carries_credentials(h)));
            // …the other host never saw anything at all.
            assert!(
                other_host_saw.all().is_empty(),
                "{status}: {:?}",
                other_host_saw.all()
            );
        }
    }

    #[tokio::test]
    async fn when_allowed_a_cross_host_redirect_is_followed_without_credentials() {
        let (elsewhere, other_host_saw) = start(None).await;
        let (hop, _) = start(Some((elsewhere, 307))).await;
        for d in DIALECTS {
            let config =
                ProviderConfig::new(kind(d), format!("p-{d:?}"), base(&hop, d)).with_api_key(KEY);
            let p = confab::providers::build_provider(&config, default_client(), opts(true));
            let _ = p.models().await;
            let req = ChatRequest::new("m", vec![ChatMessage::user(SECRET_TEXT)]);
            if let Ok(s) = p.stream(req).await {
                let _: Vec<_> = s.collect().await;
            }
        }
        let saw = other_host_saw.all();
        // Models and chat for each of the three kinds reached the other host
        // (the admin allowed it), and never with a credential.
        assert!(saw.len() >= 6, "{saw:?}");
        for (path, headers, _) in &saw {
            assert!(!carries_credentials(headers), "{path}: {headers:?}");
        }
    }

    #[tokio::test]
    async fn a_redirect_within_the_origin_is_still_followed_with_the_key() {
        let (root, saw) = start(None).await;
        let config =
            ProviderConfig::new(ProviderKind::Openai, "same", format!("{root}/to-self/v1"))
                .with_api_key(KEY);
        let p = confab::providers::build_provider(&config, default_client(), opts(false));
        let models = p.models().await.expect("followed within the origin");
        assert_eq!(models[0].id, "m");
        let seen = saw.all();
        assert_eq!(seen[0].0, "/here/v1/models");
        assert_eq!(
            seen[0].1.get("authorization").unwrap(),
            &format!("Bearer {KEY}")
        );
    }
}

// ---- /v1 parameters, tools and embeddings, as each upstream sees them ----

use common_upstream::{DEFAULT_TOOL_ARGUMENTS, FakeToolCall, TOOL_PREAMBLE};
use confab::providers::{
    EmbeddingRequest, ModelKind, ResponseFormat, Role, Tool, ToolCall, ToolCallDelta, ToolChoice,
};
use serde_json::json;

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("The weather at a place".into()),
        parameters: json!({"type": "object", "properties": {"location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}),
    }
}

fn time_tool() -> Tool {
    Tool {
        name: "get_time".into(),
        description: None,
        parameters: json!({"type": "object", "properties": {}}),
    }
}

/// A request with every sampling parameter and a tool set.
fn full_request(model: &str) -> ChatRequest {
    let mut req = request(model);
    req.temperature = Some(0.5);
    req.top_p = Some(0.75);
    req.max_tokens = Some(300);
    req.stop = vec!["END".into(), "\n\n".into()];
    req.seed = Some(1234);
    req.presence_penalty = Some(0.25);
    req.frequency_penalty = Some(-0.5);
    req.tools = vec![weather_tool(), time_tool()];
    req.tool_choice = Some(ToolChoice::Named("get_weather".into()));
    req.user = Some("user-0190abcd".into());
    req
}

#[tokio::test]
async fn every_parameter_reaches_openai_in_its_words() {
    let fake = FakeUpstream::start().await;
    let mut req = full_request("fake-model");
    req.response_format = Some(ResponseFormat::JsonSchema {
        name: "weather".into(),
        schema: json!({"type": "object", "properties": {"t": {"type": "number"}}}),
        strict: Some(true),
    });
    let o = run(provider(&fake, Dialect::OpenAi).as_ref(), req).await;
    assert_eq!(o.error, None);
    let b = fake.last_request().unwrap().body;
    assert_eq!(b["temperature"], 0.5);
    assert_eq!(b["top_p"], 0.75);
    assert_eq!(b["max_tokens"], 300);
    assert!(
        b.get("max_completion_tokens").is_none(),
        "not api.openai.com"
    );
    assert_eq!(b["stop"], json!(["END", "\n\n"]));
    assert_eq!(b["seed"], 1234);
    assert_eq!(b["presence_penalty"], 0.25);
    assert_eq!(b["frequency_penalty"], -0.5);
    assert_eq!(b["user"], "user-0190abcd");
    assert_eq!(b["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        b["tools"][0],
        json!({"type": "function", "function": {"name": "get_weather", "description": "The weather at a place",
            "parameters": weather_tool().parameters}})
    );
    assert_eq!(
        b["tools"][1],
        json!({"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}})
    );
    assert_eq!(
        b["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(
        b["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "weather",
            "schema": {"type": "object", "properties": {"t": {"type": "number"}}}, "strict": true}})
    );
}

#[tokio::test]
async fn every_parameter_reaches_anthropic_in_its_words() {
    let fake = FakeUpstream::start().await;
    let mut req = full_request("fake-model");
    req.temperature = Some(1.5);
    let o = run(provider(&fake, Dialect::Anthropic).as_ref(), req.clone()).await;
    assert_eq!(o.error, None);
    let b = fake.last_request().unwrap().body;
    assert_eq!(b["temperature"], 1.0, "clamped to Anthropic's range");
    assert_eq!(b["top_p"], 0.75);
    assert_eq!(b["max_tokens"], 300);
    assert_eq!(b["stop_sequences"], json!(["END", "\n\n"]));
    assert_eq!(b["metadata"], json!({"user_id": "user-0190abcd"}));
    assert_eq!(
        b["tools"][0],
        json!({"name": "get_weather", "description": "The weather at a place", "input_schema": weather_tool().parameters})
    );
    assert_eq!(
        b["tool_choice"],
        json!({"type": "tool", "name": "get_weather"})
    );
    for dropped in [
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "stop",
        "user",
        "response_format",
    ] {
        assert!(b.get(dropped).is_none(), "{dropped}: {b}");
    }

    // No JSON mode: refused before anything is sent.
    fake.clear_requests();
    for format in [
        ResponseFormat::JsonObject,
        ResponseFormat::JsonSchema {
            name: "w".into(),
            schema: json!({"type": "object"}),
            strict: None,
        },
    ] {
        let mut json_req = req.clone();
        json_req.response_format = Some(format);
        let o = run(provider(&fake, Dialect::Anthropic).as_ref(), json_req).await;
        assert!(o.early);
        let e = o.error.unwrap();
        assert!(matches!(e, ProviderError::Unsupported(_)), "{e:?}");
        assert_eq!(e.code(), "UNSUPPORTED");
        assert!(e.to_string().contains("no JSON mode"), "{e}");
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn every_parameter_reaches_ollama_in_its_words() {
    let fake = FakeUpstream::start().await;
    let mut req = full_request("fake-model");
    req.response_format = Some(ResponseFormat::JsonObject);
    let o = run(provider(&fake, Dialect::Ollama).as_ref(), req.clone()).await;
    assert_eq!(o.error, None);
    let b = fake.last_request().unwrap().body;
    assert_eq!(
        b["options"],
        json!({"num_predict": 300, "temperature": 0.5, "top_p": 0.75, "stop": ["END", "\n\n"],
            "seed": 1234, "presence_penalty": 0.25, "frequency_penalty": -0.5})
    );
    assert_eq!(b["format"], "json");
    assert_eq!(b["tools"].as_array().unwrap().len(), 2);
    assert_eq!(b["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(b["tools"][0]["type"], "function");
    assert!(b.get("tool_choice").is_none(), "Ollama has no tool_choice");

    req.response_format = Some(ResponseFormat::JsonSchema {
        name: "w".into(),
        schema: json!({"type": "object", "required": ["t"]}),
        strict: None,
    });
    req.tool_choice = Some(ToolChoice::None);
    run(provider(&fake, Dialect::Ollama).as_ref(), req).await;
    let b = fake.last_request().unwrap().body;
    assert_eq!(b["format"], json!({"type": "object", "required": ["t"]}));
    assert!(b.get("tools").is_none(), "tool_choice none sends no tools");
}

/// Joins the pieces of each call: (id, name, arguments) by index.
fn assemble(pieces: &[ToolCallDelta]) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for p in pieces {
        let i = p.index as usize;
        if i == calls.len() {
            calls.push(Default::default());
        }
        assert!(i < calls.len(), "call {i} before call {}", calls.len());
        if let Some(id) = &p.id {
            assert!(calls[i].0.is_empty(), "id twice");
            calls[i].0 = id.clone();
        }
        if let Some(name) = &p.name {
            calls[i].1 = name.clone();
        }
        calls[i].2.push_str(&p.arguments);
    }
    calls
}

fn tool_request(model: &str) -> ChatRequest {
    let mut req = ChatRequest::new(
        model,
        vec![ChatMessage::user("What is the weather in Paris?")],
    );
    req.tools = vec![weather_tool(), time_tool()];
    req
}

#[tokio::test]
async fn tool_calls_stream_in_every_dialect() {
    let fake = FakeUpstream::start().await;
    for d in DIALECTS {
        for model in [
            "fake-model+tools",
            "fake-model+tools+split-bytes",
            "fake-model+tools+split-bytes+crlf+comments",
        ] {
            let o = run(provider(&fake, d).as_ref(), tool_request(model)).await;
            assert_eq!(o.error, None, "{d:?} {model}");
            assert_eq!(o.text, "", "{d:?} {model}");
            assert_eq!(o.done.as_deref(), Some("tool_calls"), "{d:?} {model}");
            let calls = assemble(&o.tool_calls);
            assert_eq!(calls.len(), 1, "{d:?} {model}: {calls:?}");
            assert!(!calls[0].0.is_empty(), "an id");
            assert_eq!(calls[0].1, "get_weather");
            let args: serde_json::Value = serde_json::from_str(&calls[0].2).unwrap();
            assert_eq!(
                args,
                serde_json::from_str::<serde_json::Value>(DEFAULT_TOOL_ARGUMENTS).unwrap()
            );
            let pieces = common_upstream::tool_arg_pieces(DEFAULT_TOOL_ARGUMENTS);
            match d {
                // Split across several events, each its own ToolCall piece.
                Dialect::OpenAi | Dialect::Anthropic => {
                    assert_eq!(o.tool_calls.len(), 1 + pieces.len(), "{d:?}");
                    assert!(pieces.len() >= 3);
                }
                // Whole calls.
                Dialect::Ollama => assert_eq!(o.tool_calls.len(), 1),
            }
            let fake_call = FakeToolCall {
                id: String::new(),
                name: "get_weather".into(),
                arguments: DEFAULT_TOOL_ARGUMENTS.into(),
            };
            let output = common_upstream::tool_output_tokens(None, &[fake_call]);
            let input = common_upstream::word_count("What is the weather in Paris?");
            assert_eq!(o.usage, Some((input, output)), "{d:?} {model}");
        }
        // Byte by byte gives the very same events (Ollama's ids are made
        // per answer, so compare without them there).
        let strip = |o: &Outcome| -> Vec<ToolCallDelta> {
            o.tool_calls
                .iter()
                .map(|t| ToolCallDelta {
                    id: t.id.as_ref().map(|id| {
                        if d == Dialect::Ollama {
                            "x".into()
                        } else {
                            id.chars().filter(|c| !c.is_ascii_digit()).collect()
                        }
                    }),
                    ..t.clone()
                })
                .collect()
        };
        let whole = run(
            provider(&fake, d).as_ref(),
            tool_request("fake-model+tools"),
        )
        .await;
        let bytes = run(
            provider(&fake, d).as_ref(),
            tool_request("fake-model+tools+split-bytes"),
        )
        .await;
        assert_eq!(strip(&whole), strip(&bytes), "{d:?}");
    }
}

#[tokio::test]
async fn parallel_calls_after_text_keep_their_own_indexes() {
    let fake = FakeUpstream::start().await;
    for d in DIALECTS {
        let o = run(
            provider(&fake, d).as_ref(),
            tool_request("fake-model+parallel-tools+preamble"),
        )
        .await;
        assert_eq!(o.error, None, "{d:?}");
        assert_eq!(o.text, TOOL_PREAMBLE, "{d:?}");
        let calls = assemble(&o.tool_calls);
        assert_eq!(calls.len(), 2, "{d:?}: {calls:?}");
        assert_eq!(calls[0].1, "get_weather");
        assert_eq!(calls[1].1, "get_time");
        assert_ne!(calls[0].0, calls[1].0, "distinct ids");
        assert_eq!(o.done.as_deref(), Some("tool_calls"));
    }
}

#[tokio::test]
async fn tool_choice_and_scripted_calls() {
    let fake = FakeUpstream::start().await;
    for d in DIALECTS {
        // Forced tool (OpenAI, Anthropic) is the one the fake calls.
        let mut req = tool_request("fake-model+tools");
        req.tool_choice = Some(ToolChoice::Named("get_time".into()));
        let o = run(provider(&fake, d).as_ref(), req).await;
        let calls = assemble(&o.tool_calls);
        let expected = if d == Dialect::Ollama {
            // Ollama cannot force a tool: the model (the fake) chooses.
            "get_weather"
        } else {
            "get_time"
        };
        assert_eq!(calls[0].1, expected, "{d:?}");

        // "none": no call, the plain reply.
        let mut req = tool_request("fake-model+tools");
        req.tool_choice = Some(ToolChoice::None);
        let o = run(provider(&fake, d).as_ref(), req).await;
        assert!(o.tool_calls.is_empty(), "{d:?}");
        assert_eq!(o.text, common_upstream::DEFAULT_REPLY, "{d:?}");
        assert_eq!(o.done.as_deref(), Some("stop"));

        // Without the flag: text.
        let o = run(provider(&fake, d).as_ref(), tool_request("fake-model")).await;
        assert!(o.tool_calls.is_empty(), "{d:?}");
    }
    fake.set_tool_call("lookup", r#"{"query":"crabs of the North Sea","limit":3}"#);
    for d in DIALECTS {
        let o = run(provider(&fake, d).as_ref(), tool_request("fake-model")).await;
        let calls = assemble(&o.tool_calls);
        assert_eq!(calls.len(), 1, "{d:?}");
        assert_eq!(calls[0].1, "lookup");
        let args: serde_json::Value = serde_json::from_str(&calls[0].2).unwrap();
        assert_eq!(args, json!({"query": "crabs of the North Sea", "limit": 3}));
        // A request without tools still gets text.
        let o = run_model(&fake, d, "fake-model").await;
        assert_complete(&o, common_upstream::DEFAULT_REPLY, d);
    }
    fake.clear_tool_call();
    let o = run(
        provider(&fake, Dialect::OpenAi).as_ref(),
        tool_request("fake-model"),
    )
    .await;
    assert!(o.tool_calls.is_empty());
}

#[tokio::test]
async fn tool_round_trip_in_every_dialect() {
    let fake = FakeUpstream::start().await;
    for d in DIALECTS {
        let p = provider(&fake, d);
        // 1. The model calls the tool.
        let first = run(p.as_ref(), tool_request("fake-model+parallel-tools")).await;
        let calls = assemble(&first.tool_calls);
        assert_eq!(calls.len(), 2, "{d:?}");
        // 2. The client runs both and sends the results back.
        let mut assistant = ChatMessage::assistant("");
        assistant.tool_calls = calls
            .iter()
            .map(|(id, name, arguments)| ToolCall {
                id: id.clone(),
                name: name.clone(),
                arguments: arguments.clone(),
            })
            .collect();
        let mut req = tool_request("fake-model+parallel-tools");
        req.messages.push(assistant);
        for (i, (id, _, _)) in calls.iter().enumerate() {
            let mut result = ChatMessage::new(Role::Tool, format!("result-{i} sunny 21C"));
            result.tool_call_id = Some(id.clone());
            req.messages.push(result);
        }
        let second = run(p.as_ref(), req).await;
        assert_eq!(second.error, None, "{d:?}");
        assert!(second.tool_calls.is_empty(), "{d:?}");
        assert_eq!(second.done.as_deref(), Some("stop"), "{d:?}");
        let body = fake.last_request().unwrap().body;
        let msgs = body["messages"].as_array().unwrap();
        match d {
            Dialect::OpenAi => {
                assert_eq!(msgs.len(), 4);
                assert_eq!(msgs[1]["role"], "assistant");
                assert_eq!(msgs[1]["content"], serde_json::Value::Null);
                assert_eq!(msgs[1]["tool_calls"][0]["id"], calls[0].0.as_str());
                assert_eq!(msgs[1]["tool_calls"][0]["type"], "function");
                assert_eq!(msgs[1]["tool_calls"][0]["function"]["name"], "get_weather");
                assert_eq!(
                    msgs[1]["tool_calls"][0]["function"]["arguments"],
                    DEFAULT_TOOL_ARGUMENTS
                );
                assert_eq!(msgs[2]["role"], "tool");
                assert_eq!(msgs[2]["tool_call_id"], calls[0].0.as_str());
                assert_eq!(msgs[3]["tool_call_id"], calls[1].0.as_str());
                // The fake answers the last result.
                assert_eq!(
                    second.text,
                    common_upstream::tool_result_reply("result-1 sunny 21C")
                );
            }
            Dialect::Anthropic => {
                assert_eq!(msgs.len(), 3, "results merged into one user turn");
                assert_eq!(
                    msgs[1]["content"][0],
                    json!({"type": "tool_use", "id": calls[0].0, "name": "get_weather",
                        "input": serde_json::from_str::<serde_json::Value>(DEFAULT_TOOL_ARGUMENTS).unwrap()})
                );
                assert_eq!(msgs[2]["role"], "user");
                assert_eq!(
                    msgs[2]["content"],
                    json!([
                        {"type": "tool_result", "tool_use_id": calls[0].0, "content": "result-0 sunny 21C"},
                        {"type": "tool_result", "tool_use_id": calls[1].0, "content": "result-1 sunny 21C"}
                    ])
                );
                assert_eq!(
                    second.text,
                    common_upstream::tool_result_reply("result-0 sunny 21C result-1 sunny 21C")
                );
            }
            Dialect::Ollama => {
                assert_eq!(msgs.len(), 4);
                assert_eq!(
                    msgs[1]["tool_calls"][0]["function"],
                    json!({"name": "get_weather",
                        "arguments": serde_json::from_str::<serde_json::Value>(DEFAULT_TOOL_ARGUMENTS).unwrap()})
                );
                assert_eq!(msgs[2]["role"], "tool");
                assert_eq!(msgs[2]["tool_name"], "get_weather");
                assert_eq!(msgs[3]["tool_name"], "get_time");
                assert_eq!(msgs[3]["content"], "result-1 sunny 21C");
                assert_eq!(
                    second.text,
                    common_upstream::tool_result_reply("result-1 sunny 21C")
                );
            }
        }
    }
}

#[tokio::test]
async fn embeddings_from_openai_and_ollama() {
    let fake = FakeUpstream::start().await;
    let texts = vec!["a crab walks sideways".to_string(), "hello".to_string()];
    for d in [Dialect::OpenAi, Dialect::Ollama] {
        let p = provider(&fake, d);
        let e = p
            .embed(EmbeddingRequest {
                model: "nomic-embed-text".into(),
                input: texts.clone(),
                dimensions: None,
                user: Some("user-1".into()),
                api_key_override: None,
            })
            .await
            .unwrap();
        assert_eq!(e.vectors.len(), 2, "{d:?}");
        assert_eq!(
            e.vectors[0],
            common_upstream::fake_embedding(&texts[0], 8),
            "{d:?}"
        );
        assert_eq!(e.vectors[1], common_upstream::fake_embedding(&texts[1], 8));
        assert_eq!(e.input_tokens, 5, "{d:?}");
        let r = fake.embedding_requests().pop().unwrap();
        assert_eq!(r.body["model"], "nomic-embed-text");
        assert_eq!(r.body["input"], json!(texts));
        match d {
            Dialect::OpenAi => {
                assert_eq!(r.path, "/openai/v1/embeddings");
                assert_eq!(r.body["user"], "user-1");
                assert_eq!(r.body["encoding_format"], "float");
                assert_eq!(
                    r.header("authorization"),
                    Some(format!("Bearer {KEY}").as_str())
                );
            }
            _ => assert_eq!(r.path, "/ollama/api/embed"),
        }
        // Fewer dimensions.
        let e = p
            .embed(EmbeddingRequest {
                model: "nomic-embed-text".into(),
                input: vec!["x".into()],
                dimensions: Some(4),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(e.vectors[0].len(), 4, "{d:?}");
        assert_eq!(
            fake.embedding_requests().pop().unwrap().body["dimensions"],
            4
        );
        // Errors are mapped like chat errors; keys stay with their provider.
        let e = p
            .embed(EmbeddingRequest {
                model: "x+missing-model".into(),
                input: vec!["x".into()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), "MODEL_NOT_FOUND", "{d:?}: {e}");
        let e = p
            .embed(EmbeddingRequest {
                model: "m".into(),
                input: vec!["x".into()],
                api_key_override: Some(common_upstream::REJECTED_KEY.into()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::KeyRejected(_)), "{d:?}: {e:?}");
        assert!(!e.to_string().contains("sk-re"), "{e}");
        // Retried before the first byte, like chat.
        let sent = fake.embedding_requests().len();
        fake.fail_next(1);
        let e = p
            .embed(EmbeddingRequest {
                model: "m".into(),
                input: vec!["again".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(e.vectors[0], common_upstream::fake_embedding("again", 8));
        assert_eq!(
            fake.embedding_requests().len(),
            sent + 2,
            "{d:?}: one retry"
        );
        // A failure that outlasts the retries is reported with its message.
        fake.fail_next(3);
        let e = p
            .embed(EmbeddingRequest {
                model: "m".into(),
                input: vec!["x".into()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(e, ProviderError::Upstream { status: 503, .. }),
            "{d:?}: {e:?}"
        );
    }
    let before = fake.requests().len();
    let e = provider(&fake, Dialect::Anthropic)
        .embed(EmbeddingRequest {
            model: "claude-3-5-haiku-latest".into(),
            input: vec!["x".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Unsupported(_)), "{e:?}");
    assert_eq!(e.code(), "UNSUPPORTED");
    assert_eq!(fake.requests().len(), before, "nothing sent");
}

#[tokio::test]
async fn anthropic_max_tokens_defaults_to_the_models_output_limit() {
    let fake = FakeUpstream::start().await;
    for (model, limit) in [
        ("claude-3-5-sonnet-20241022", 8192),
        ("claude-3-7-sonnet-20250219", 64_000),
        ("claude-sonnet-4-20250514", 64_000),
        ("claude-opus-4-1-20250805", 32_000),
        ("claude-3-haiku-20240307", 4096),
        ("unknown-model", 4096),
    ] {
        let o = run(provider(&fake, Dialect::Anthropic).as_ref(), request(model)).await;
        assert_eq!(o.error, None);
        assert_eq!(
            fake.last_request().unwrap().body["max_tokens"],
            limit,
            "{model}"
        );
    }
    fake.set_models(&[
        "claude-3-5-haiku-20241022",
        "claude-opus-4-20250514",
        "other",
    ]);
    let models = provider(&fake, Dialect::Anthropic).models().await.unwrap();
    let limit = |id: &str| {
        models
            .iter()
            .find(|m| m.id == id)
            .unwrap()
            .max_output_tokens
    };
    assert_eq!(limit("claude-3-5-haiku-20241022"), Some(8192));
    assert_eq!(limit("claude-opus-4-20250514"), Some(32_000));
    assert_eq!(limit("other"), None);

    // The registry passes the limit (and the kind) on.
    let reg = Registry::new(default_client(), options());
    reg.add(
        ProviderConfig::new(ProviderKind::Anthropic, "an", fake.anthropic_base()).with_api_key(KEY),
    )
    .unwrap();
    reg.refresh().await;
    let m = reg
        .models()
        .into_iter()
        .find(|m| m.id == "claude-3-5-haiku-20241022")
        .unwrap();
    assert_eq!(m.max_output_tokens, Some(8192));
    assert_eq!(m.kind, ModelKind::Chat);
}

#[tokio::test]
async fn ollama_context_windows_from_show_fetched_once() {
    let fake = FakeUpstream::start().await;
    fake.set_models(&["llama3.2", "qwen2.5:7b", "nomic-embed-text", "broken+500"]);
    fake.set_context_length("qwen2.5:7b", 32_768);
    let p = provider(&fake, Dialect::Ollama);
    let shows = |fake: &FakeUpstream| -> Vec<String> {
        fake.requests()
            .into_iter()
            .filter(|r| r.path == "/ollama/api/show")
            .map(|r| r.body["model"].as_str().unwrap().to_string())
            .collect()
    };
    let models = p.models().await.unwrap();
    let get = |models: &[confab::providers::ModelInfo], id: &str| {
        models.iter().find(|m| m.id == id).unwrap().clone()
    };
    assert_eq!(
        get(&models, "llama3.2").context_window,
        Some(common_upstream::DEFAULT_CONTEXT_LENGTH as u32)
    );
    assert_eq!(get(&models, "qwen2.5:7b").context_window, Some(32_768));
    let embed = get(&models, "nomic-embed-text");
    assert_eq!(
        embed.context_window,
        Some(common_upstream::EMBEDDING_CONTEXT_LENGTH as u32)
    );
    assert_eq!(embed.kind, ModelKind::Embedding);
    assert_eq!(get(&models, "llama3.2").kind, ModelKind::Chat);
    // A failing /api/show leaves the window unknown, the model listed.
    assert_eq!(get(&models, "broken+500").context_window, None);
    let mut first = shows(&fake);
    first.sort();
    assert_eq!(
        first,
        ["broken+500", "llama3.2", "nomic-embed-text", "qwen2.5:7b"]
    );

    // The next refresh asks again only about the one that failed.
    fake.clear_requests();
    let again = p.models().await.unwrap();
    assert_eq!(get(&again, "qwen2.5:7b").context_window, Some(32_768));
    assert_eq!(shows(&fake), ["broken+500"]);

    // A new model is asked about once.
    fake.set_models(&["llama3.2", "mistral"]);
    fake.clear_requests();
    let third = p.models().await.unwrap();
    assert_eq!(third.len(), 2);
    assert_eq!(shows(&fake), ["mistral"]);

    // Through the registry: the window reaches the merged list.
    let reg = Registry::new(default_client(), options());
    reg.add(ProviderConfig::new(
        ProviderKind::Ollama,
        "ol",
        fake.ollama_base(),
    ))
    .unwrap();
    reg.refresh().await;
    let m = reg
        .models()
        .into_iter()
        .find(|m| m.id == "mistral")
        .unwrap();
    assert_eq!(
        m.context_window,
        Some(common_upstream::DEFAULT_CONTEXT_LENGTH as u32)
    );
}

#[tokio::test]
async fn non_streaming_answers_in_each_dialect() {
    // For clients that call the fake directly (benchmarks, SDK checks).
    let fake = FakeUpstream::start().await;
    let client = reqwest::Client::new();
    let tools_oa = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let r: serde_json::Value = client
        .post(format!("{}/chat/completions", fake.openai_base()))
        .bearer_auth(KEY)
        .json(&json!({"model": "m+tools", "messages": [{"role": "user", "content": "hi"}], "tools": tools_oa}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        r["choices"][0]["message"]["content"],
        serde_json::Value::Null
    );
    assert_eq!(
        r["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        DEFAULT_TOOL_ARGUMENTS
    );
    let r: serde_json::Value = client
        .post(format!("{}/v1/messages", fake.anthropic_base()))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["type"], "message");
    assert_eq!(r["stop_reason"], "end_turn");
    assert_eq!(r["content"][0]["text"], common_upstream::DEFAULT_REPLY);
    let r: serde_json::Value = client
        .post(format!("{}/api/chat", fake.ollama_base()))
        .json(&json!({"model": "m", "stream": false, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["done"], true);
    assert_eq!(r["message"]["content"], common_upstream::DEFAULT_REPLY);
    // OpenAI's SDK asks for base64 embeddings by default.
    let r: serde_json::Value = client
        .post(format!("{}/embeddings", fake.openai_base()))
        .bearer_auth(KEY)
        .json(
            &json!({"model": "text-embedding-3-small", "input": "hi", "encoding_format": "base64"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(r["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(floats, common_upstream::fake_embedding("hi", 8));
    assert_eq!(r["usage"]["prompt_tokens"], 1);
}

/// Opens `n` answers at once from `p` and returns how many had their first
/// token by `within`. The answers stay open meanwhile (each lasts far
/// longer than `within`).
async fn first_tokens_within(p: Arc<dyn Provider>, n: usize, within: Duration) -> usize {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut held = Vec::new();
    for _ in 0..n {
        let (p, tx) = (p.clone(), tx.clone());
        held.push(tokio::spawn(async move {
            let mut s = p.stream(request("fake-model+first-now")).await.unwrap();
            while let Some(e) = s.next().await {
                if let Ok(ChatEvent::Delta(_)) = e {
                    let _ = tx.send(());
                    break;
                }
            }
            // Kept open: the connection's stream stays in use.
            std::future::pending::<()>().await;
        }));
    }
    let deadline = tokio::time::Instant::now() + within;
    let mut got = 0;
    while got < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(())) => got += 1,
            _ => break,
        }
    }
    for h in held {
        h.abort();
    }
    got
}

/// A server that allows 3 streams at once per HTTP/2 connection: hyper's
/// client alone makes the 4th answer wait until one of the first three
/// ends; spread over clients ([`confab::providers::shards`]) all six start.
#[tokio::test]
async fn answers_past_a_servers_stream_limit_start_at_once() {
    let fake = FakeUpstream::start_tls_limited(3).await;
    // Each answer: the first word at once, then one word a second.
    fake.set_reply(
        &(0..30)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    fake.set_token_delay(Duration::from_secs(1));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, fake.cert_pem.as_deref().unwrap()).unwrap();
    let make = Arc::new(confab::providers::client_factory(Some(&ca)).unwrap());
    let build = |shards| -> Arc<dyn Provider> {
        Arc::new(
            OpenAiProvider::new("tls", &fake.openai_base(), Some(KEY.to_string()), make())
                .with_options(ProviderOptions {
                    shards,
                    ..options()
                }),
        )
    };

    let alone = first_tokens_within(build(None), 6, Duration::from_secs(5)).await;
    assert_eq!(
        alone, 3,
        "one connection: the server's limit holds the rest back"
    );

    let shards = confab::providers::shards::Shards::new(3, {
        let make = make.clone();
        move || make()
    });
    let spread = first_tokens_within(build(Some(shards.clone())), 6, Duration::from_secs(10)).await;
    assert_eq!(spread, 6, "every answer started");
    assert_eq!(shards.len(), 2, "two clients, three answers each");
}
