#!/usr/bin/env bash
# Debian packages the demo, tests and benchmarks run against, installing only what is missing:
# - dovecot-imapd: the IMAP server the demo and the tests start on 127.0.0.1;
# - isync (mbsync): the benchmark's peer;
# - chromium + chromium-driver: the headless browser the UI test drives;
# - redis-server: the Celery broker and result backend the multi-host test starts for itself;
# - iproute2: `ip netns`, the network namespaces that stand in for separate hosts in that test;
# - postgresql: only when nothing answers on 127.0.0.1:5432, so that the tests can start
#   a throwaway cluster of their own (initdb + pg_ctl in a temp dir).
# `install-system-packages.sh demo` installs only what `make demo` needs (Dovecot); with no
# argument (make install, make test) everything above.
set -euo pipefail
missing=()
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || missing+=(dovecot-imapd)
if [ "${1:-all}" != demo ]; then
command -v mbsync >/dev/null 2>&1 || missing+=(isync)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  missing+=(postgresql)
fi
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing Debian packages: ${missing[*]} (a minute or two)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed ${missing[*]}"
