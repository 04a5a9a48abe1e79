#!/usr/bin/env bash
# Headless Chromium and its WebDriver from Debian, for tests/test_browser.py (skipped without them).
# Idempotent: does nothing when both are installed. Needs root (CI runs as root).
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "chromium and chromedriver already installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium chromium-driver >/dev/null
/usr/bin/chromium --version 2>/dev/null || true
