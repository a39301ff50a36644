"""Drives confab's Anthropic-compatible /v1 with the official `anthropic` SDK.

Run by tests/it/v1_sdk.rs with the venv tests/run.sh installs; it reads
its inputs from the environment and prints ONE JSON document on stdout:
an object with one entry per step. A step that raised is
{"error": <message>, "exception": <class name>} so the Rust side reports
every failing step at once instead of the first.

Environment:
  CONFAB_BASE_URL         confab's root, e.g. http://127.0.0.1:PORT (the SDK adds /v1)
  CONFAB_API_KEY          a confab API key (cfk_...) with the write scope
  CONFAB_MODEL            a chat model
  CONFAB_TOOL_MODEL       a chat model the fake upstream answers with a tool call
  CONFAB_429_MODEL        a model whose upstream answers 429
  CONFAB_MARKER           a word put in every prompt, so the test finds the
                          requests the upstream saw
"""

import json
import os
import sys

import anthropic

BASE = os.environ["CONFAB_BASE_URL"]
KEY = os.environ["CONFAB_API_KEY"]
MODEL = os.environ["CONFAB_MODEL"]
TOOL_MODEL = os.environ["CONFAB_TOOL_MODEL"]
MODEL_429 = os.environ["CONFAB_429_MODEL"]
MARKER = os.environ["CONFAB_MARKER"]

# No retries: a 429 must surface as the typed error, not be retried away.
client = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=30)

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def usage_of(u):
    return {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens}


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def models():
    return {"ids": [m.id for m in client.models.list()]}


def completion():
    # This SDK version no longer has a `temperature` argument; the API
    # still takes the field, so it goes in the body as callers send it.
    r = client.messages.create(
        model=MODEL,
        max_tokens=50,
        system="Be brief.",
        messages=[{"role": "user", "content": f"Say hello {MARKER}-plain"}],
        stop_sequences=["END"],
        extra_body={"temperature": 0.3},
    )
    return {
        "type": r.type,
        "role": r.role,
        "model": r.model,
        "content": text_of(r),
        "stop_reason": r.stop_reason,
        "usage": usage_of(r.usage),
    }


def streamed():
    kinds, text = [], ""
    with client.messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": f"Stream please {MARKER}-stream"}],
    ) as s:
        for event in s:
            if not kinds or kinds[-1] != event.type:
                kinds.append(event.type)
            if event.type == "text":
                text += event.text
        final = s.get_final_message()
    return {
        "content": text,
        "final_content": text_of(final),
        "events": kinds,
        "stop_reason": final.stop_reason,
        "usage": usage_of(final.usage),
    }


def tool_round_trip():
    messages = [{"role": "user", "content": f"Weather in Paris? {MARKER}-tool"}]
    first = client.messages.create(model=TOOL_MODEL, max_tokens=100, messages=messages, tools=[WEATHER_TOOL])
    uses = [b for b in first.content if b.type == "tool_use"]
    calls = [{"id": b.id, "name": b.name, "input": b.input} for b in uses]
    if not calls:
        return {"stop_reason": first.stop_reason, "calls": [], "answer": None}
    messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": c["id"], "content": f"sunny-{MARKER}"} for c in calls
            ],
        }
    )
    second = client.messages.create(model=TOOL_MODEL, max_tokens=100, messages=messages, tools=[WEATHER_TOOL])
    return {
        "stop_reason": first.stop_reason,
        "calls": calls,
        "answer": text_of(second),
        "answer_stop_reason": second.stop_reason,
    }


def streamed_tool_call():
    with client.messages.stream(
        model=TOOL_MODEL,
        max_tokens=100,
        messages=[{"role": "user", "content": f"Weather in Oslo? {MARKER}-toolstream"}],
        tools=[WEATHER_TOOL],
    ) as s:
        for _ in s:
            pass
        final = s.get_final_message()
    calls = [{"id": b.id, "name": b.name, "input": b.input} for b in final.content if b.type == "tool_use"]
    return {"stop_reason": final.stop_reason, "calls": calls}


def typed_error(call):
    try:
        call()
    except anthropic.APIStatusError as e:
        return {
            "exception": type(e).__name__,
            "status": e.status_code,
            "retry_after": e.response.headers.get("retry-after"),
            "body": e.body,
        }
    return {"exception": None}


def bad_key():
    bad = anthropic.Anthropic(base_url=BASE, api_key="cfk_not_a_real_key", max_retries=0, timeout=30)
    return typed_error(
        lambda: bad.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    )


def rate_limited():
    return typed_error(
        lambda: client.messages.create(
            model=MODEL_429, max_tokens=10, messages=[{"role": "user", "content": f"hi {MARKER}-429"}]
        )
    )


def unknown_model():
    return typed_error(
        lambda: client.messages.create(
            model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
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
    "error_auth": bad_key,
    "error_rate_limit": rate_limited,
    "error_not_found": unknown_model,
}

json.dump(
    {"sdk": "anthropic", "version": anthropic.__version__, **{k: step(f) for k, f in STEPS.items()}},
    sys.stdout,
)
