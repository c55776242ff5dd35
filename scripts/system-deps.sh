#!/usr/bin/env bash
# Install the real components the test suite needs, when they are missing (Debian, as root).
# Idempotent; prints what it does. Without root it only reports what is missing.
set -euo pipefail

need=()
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if ! pg_up && ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi

# Slurm (controller, node daemon, munge) and Open MPI for the real-scheduler and MPI tests.
command -v slurmctld >/dev/null || need+=(slurm-wlm munge libpmix-dev)
command -v mpirun >/dev/null || need+=(openmpi-bin libopenmpi-dev)
# ssh + rsync for the rsync transfer tests (a private sshd on 127.0.0.1); sshd lives in /usr/sbin
{ command -v sshd >/dev/null || [ -x /usr/sbin/sshd ]; } || need+=(openssh-server)
{ command -v ssh >/dev/null && command -v ssh-keygen >/dev/null; } || need+=(openssh-client)
command -v rsync >/dev/null || need+=(rsync)
# Chromium for the console's browser tests (Playwright drives it through its executable path).
{ command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } || need+=(chromium)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: missing ${need[*]} and cannot apt-get install them here; tests needing them fail in CI" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
