#!/usr/bin/env bash
# slurm-down.sh [--purge-state] -- stop beambridge's local Slurm test cluster (see slurm-up.sh).
#
# Cancels every job first (with proctrack/linuxproc, job processes would outlive slurmd otherwise),
# then stops each slurmd and slurmctld by the pid in its pid file, and munged only if slurm-up.sh
# started it. Never kills processes by name. --purge-state also removes Slurm's saved state and logs.
# Idempotent: running it when nothing is up does nothing.
set -uo pipefail

PURGE_STATE=0
for arg in "$@"; do
  case $arg in
    --purge-state) PURGE_STATE=1 ;;
    *) echo "usage: $0 [--purge-state]" >&2; exit 2 ;;
  esac
done

MUNGE_PID=/run/munge/munged.pid
SCRIPT_NAME=slurm-down
# shellcheck source=scripts/slurm-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/slurm-common.sh"

[ "$(id -u)" -eq 0 ] || die "must run as root"
take_lock

cancel_all_jobs() {
  local ids
  alive "$CTLD_PID" || return 0
  ids=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
  [ -n "${ids// /}" ] || return 0
  log "cancelling jobs: $ids"
  # shellcheck disable=SC2086  # one argument per job id
  scancel --full $ids 2>/dev/null || true
  for _ in $(seq 100); do
    [ -z "$(squeue -h -o %i 2>/dev/null)" ] && return 0
    sleep 0.2
  done
  log "some jobs were still listed after 20 s; stopping the daemons anyway"
}

cancel_all_jobs
slurmds=()
for f in /run/slurmd-*.pid; do [ -e "$f" ] && slurmds+=("$f"); done
if [ ${#slurmds[@]} -gt 0 ]; then
  log "stopping ${#slurmds[@]} slurmd"
  stop_pid_files "${slurmds[@]}"
fi
last=()
[ -f "$CTLD_PID" ] && last+=("$CTLD_PID")
[ -f "$RUN_DIR/started-munged" ] && last+=("$MUNGE_PID")  # munged only if slurm-up.sh started it
if [ ${#last[@]} -gt 0 ]; then
  log "stopping ${last[*]}"
  stop_pid_files "${last[@]}"
fi
rm -f "$RUN_DIR/started-munged"
if [ "$PURGE_STATE" = 1 ]; then
  rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd-n* /var/log/slurm/*
fi
log "done"
