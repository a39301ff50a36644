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
