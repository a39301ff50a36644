"""Drives confab's OpenAI-compatible /v1 with the official `openai` SDK.

Run by tests/it/v1_sdk.rs with the venv tests/run.sh installs; it reads
its inputs from the environment and prints ONE JSON document on stdout:
an object with one entry per step. A step that raised is
{"error": <message>, "exception": <class name>} so the Rust side reports
every failing step at once instead of the first.

Environment:
  CONFAB_BASE_URL         e.g. http://127.0.0.1:PORT/v1
  CONFAB_API_KEY          a confab API key (cfk_...) with the write scope
  CONFAB_MODEL            a chat model
  CONFAB_TOOL_MODEL       a chat model the fake upstream answers with a tool call
  CONFAB_EMBED_MODEL      an embedding model ("" when the provider has none)
  CONFAB_429_MODEL        a model whose upstream answers 429
  CONFAB_MARKER           a word put in every prompt, so the test finds the
                          requests the upstream saw
"""

import json
import os
import sys

import openai

BASE = os.environ["CONFAB_BASE_URL"]
KEY = os.environ["CONFAB_API_KEY"]
MODEL = os.environ["CONFAB_MODEL"]
TOOL_MODEL = os.environ["CONFAB_TOOL_MODEL"]
EMBED_MODEL = os.environ.get("CONFAB_EMBED_MODEL", "")
MODEL_429 = os.environ["CONFAB_429_MODEL"]
MARKER = os.environ["CONFAB_MARKER"]

# No retries: a 429 must surface as the typed error, not be retried away.
client = openai.OpenAI(base_url=BASE, api_key=KEY, max_retries=0, timeout=30)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def usage_of(u):
    if u is None:
        return None
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


def models():
    return {"ids": [m.id for m in client.models.list()]}


def completion():
    r = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"Say hello {MARKER}-plain"},
        ],
        temperature=0.3,
        max_tokens=50,
        stop=["END"],
    )
    c = r.choices[0]
    return {
        "object": r.object,
        "model": r.model,
        "content": c.message.content,
        "role": c.message.role,
        "finish_reason": c.finish_reason,
        "usage": usage_of(r.usage),
    }


def streamed():
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"Stream please {MARKER}-stream"}],
        stream=True,
        stream_options={"include_usage": True},
        top_p=0.5,
    )
    text, chunks, finish, usage, roles = "", 0, None, None, []
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage = usage_of(chunk.usage)
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            if choice.delta.content:
                text += choice.delta.content
            if choice.finish_reason:
                finish = choice.finish_reason
    return {
        "content": text,
        "chunks": chunks,
        "roles": roles,
        "finish_reason": finish,
        "usage": usage,
    }


def tool_round_trip():
    messages = [{"role": "user", "content": f"Weather in Paris? {MARKER}-tool"}]
    first = client.chat.completions.create(
        model=TOOL_MODEL, messages=messages, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    msg = first.choices[0].message
    calls = [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
        for c in (msg.tool_calls or [])
    ]
    if not calls:
        return {"finish_reason": first.choices[0].finish_reason, "calls": [], "answer": None}
    messages.append(
        {
            "role": "assistant",
            "content": msg.content,
            "tool_calls": [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in calls
            ],
        }
    )
    for c in calls:
        messages.append({"role": "tool", "tool_call_id": c["id"], "content": f"sunny-{MARKER}"})
    second = client.chat.completions.create(model=TOOL_MODEL, messages=messages, tools=[WEATHER_TOOL])
    return {
        "finish_reason": first.choices[0].finish_reason,
        "calls": calls,
        "answer": second.choices[0].message.content,
        "answer_finish_reason": second.choices[0].finish_reason,
    }


def streamed_tool_call():
    stream = client.chat.completions.create(
        model=TOOL_MODEL,
        messages=[{"role": "user", "content": f"Weather in Oslo? {MARKER}-toolstream"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    calls, finish = {}, None
    for chunk in stream:
        for choice in chunk.choices:
            for d in choice.delta.tool_calls or []:
                c = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
                if d.id:
                    c["id"] = d.id
                if d.function and d.function.name:
                    c["name"] = d.function.name
                if d.function and d.function.arguments:
                    c["arguments"] += d.function.arguments
            if choice.finish_reason:
                finish = choice.finish_reason
    return {"finish_reason": finish, "calls": [calls[i] for i in sorted(calls)]}


def embedding():
    return embed(encoding_format="float")


def embedding_default_encoding():
    # What a plain `client.embeddings.create(model, input)` sends: the SDK
    # asks for base64 unless told otherwise, and decodes it itself.
    return embed()


def embed(**kw):
    if not EMBED_MODEL:
        return {"skipped": "this provider offers no embedding model"}
    r = client.embeddings.create(model=EMBED_MODEL, input=[f"first {MARKER}", "second text"], **kw)
    return {
        "count": len(r.data),
        "dims": [len(d.embedding) for d in r.data],
        "indexes": [d.index for d in r.data],
        "usage": {"prompt_tokens": r.usage.prompt_tokens, "total_tokens": r.usage.total_tokens},
    }


def typed_error(call):
    try:
        call()
    except openai.APIStatusError as e:
        return {
            "exception": type(e).__name__,
            "status": e.status_code,
            "retry_after": e.response.headers.get("retry-after"),
            "body": e.body,
        }
    return {"exception": None}


def bad_key():
    bad = openai.OpenAI(base_url=BASE, api_key="cfk_not_a_real_key", max_retries=0, timeout=30)
    return typed_error(lambda: bad.models.list())


def rate_limited():
    return typed_error(
        lambda: client.chat.completions.create(
            model=MODEL_429, messages=[{"role": "user", "content": f"hi {MARKER}-429"}]
        )
    )


def unknown_model():
    return typed_error(
        lambda: client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    )


def step(fn):
    try:
        return fn()
    except Exception as e:  # reported to the Rust side, which fails on it
        return {"error": str(e), "exception": type(e).__name__}


STEPS = {
    "models": models,
    "completion": completion,
    "stream": streamed,
    "tool": tool_round_trip,
    "tool_stream": streamed_tool_call,
    "embedding": embedding,
    "embedding_default_encoding": embedding_default_encoding,
    "error_auth": bad_key,
    "error_rate_limit": rate_limited,
    "error_not_found": unknown_model,
}

json.dump({"sdk": "openai", "version": openai.__version__, **{k: step(f) for k, f in STEPS.items()}}, sys.stdout)
