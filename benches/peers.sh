#!/bin/sh
# confab side by side with LiteLLM proxy and Open WebUI (issue 21): installs
# the peers from PyPI into venvs under target/peers/, builds confab release,
# runs all three against one fake OpenAI upstream and prints a Markdown table.
# Needs python3 (3.11 or 3.12: Open WebUI's range) with venv, cargo and network
# access to PyPI. Options: --streams N, --products confab,litellm,openwebui,
# --skip-build. See benches/peers/run.py.
set -eu
cd "$(dirname "$0")/.."
exec python3 benches/peers/run.py "$@"
