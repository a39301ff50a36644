"""50 concurrent calls through the official SDKs' async clients, half with
`openai` (POST /v1/chat/completions) and half with `anthropic`
(POST /v1/messages), spread over two API keys. Run by tests/it/v1_sdk.rs,
which sets a daily quota and checks that exactly that many were admitted
and that usage per key adds up to the calls. Prints ONE JSON document:
{"calls": [{"sdk", "key", "ok", "input_tokens", "output_tokens",
"exception", "status", "retry_after"}...]}.

Environment:
  CONFAB_BASE_URL         confab's root, e.g. http://127.0.0.1:PORT
  CONFAB_API_KEY          a confab API key (write scope)
  CONFAB_API_KEY_2        a second one
  CONFAB_MODEL            a chat model
  CONFAB_CALLS            how many calls (default 50)
"""

import asyncio
import json
import os
import sys

import anthropic
import openai

BASE = os.environ["CONFAB_BASE_URL"]
KEYS = [os.environ["CONFAB_API_KEY"], os.environ["CONFAB_API_KEY_2"]]
MODEL = os.environ["CONFAB_MODEL"]
CALLS = int(os.environ.get("CONFAB_CALLS", "50"))

# One client per key and SDK; no retries, so a 429 is the typed error.
OPENAI = [openai.AsyncOpenAI(base_url=BASE + "/v1", api_key=k, max_retries=0, timeout=60) for k in KEYS]
ANTHROPIC = [anthropic.AsyncAnthropic(base_url=BASE, api_key=k, max_retries=0, timeout=60) for k in KEYS]


async def call(i, start):
    sdk = "openai" if i % 2 == 0 else "anthropic"
    key = i % 3 % 2  # not in step with the SDK choice
    out = {"sdk": sdk, "key": key, "ok": False}
    await start.wait()
    try:
        if sdk == "openai":
            r = await OPENAI[key].chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"count me {i}"}]
            )
            out.update(ok=True, input_tokens=r.usage.prompt_tokens, output_tokens=r.usage.completion_tokens)
        else:
            r = await ANTHROPIC[key].messages.create(
                model=MODEL, max_tokens=64, messages=[{"role": "user", "content": f"count me {i}"}]
            )
            out.update(ok=True, input_tokens=r.usage.input_tokens, output_tokens=r.usage.output_tokens)
    except (openai.APIStatusError, anthropic.APIStatusError) as e:
        out.update(exception=type(e).__name__, status=e.status_code, retry_after=e.response.headers.get("retry-after"))
    except Exception as e:  # reported; the Rust side fails on it
        out.update(exception=type(e).__name__, error=str(e))
    return out


async def main():
    # All calls are created first and released together.
    start = asyncio.Event()
    tasks = [asyncio.create_task(call(i, start)) for i in range(CALLS)]
    await asyncio.sleep(0.05)
    start.set()
    calls = await asyncio.gather(*tasks)
    for c in OPENAI + ANTHROPIC:
        await c.close()
    json.dump({"calls": calls}, sys.stdout)


asyncio.run(main())
