#!/usr/bin/env bash
# Installs what the console's browser test drives: Debian's headless Chromium and its
# chromedriver, and a font with Chinese glyphs for the screenshots. Idempotent: does nothing
# when chromium and chromedriver are already on PATH. Needs root (apt-get), which CI has.
#
# Usage: deploy/console/install-browser.sh
set -euo pipefail

packages=(chromium chromium-driver fonts-wqy-microhei)
if command -v chromium >/dev/null && command -v chromedriver >/dev/null \
    && dpkg-query -W -f='${Status}\n' fonts-wqy-microhei 2>/dev/null | grep -q 'install ok installed'; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "install-browser.sh: chromium/chromedriver missing; install Debian's ${packages[*]} (as root)" >&2
    exit 1
fi
echo "install-browser.sh: installing Debian's ${packages[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
chromium --version
chromedriver --version
