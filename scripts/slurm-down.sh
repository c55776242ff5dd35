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

RUN_DIR=/run/beambridge-slurm
CTLD_PID=/run/slurmctld.pid
MUNGE_PID=/run/munge/munged.pid

log() { echo "[slurm-down $(date +%T)] $*"; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }

[ "$(id -u)" -eq 0 ] || { echo "slurm-down: must run as root" >&2; exit 1; }
mkdir -p "$RUN_DIR"
exec 9>"$RUN_DIR/lock"
flock -w 300 9 || { echo "slurm-down: another slurm-up/slurm-down is still running" >&2; exit 1; }

stop_pid_files() {  # SIGTERM every live pid named in the given pid files at once, then wait for all
  local f p pids=() _ running
  for f in "$@"; do
    [ -f "$f" ] || continue
    p=$(cat "$f" 2>/dev/null || true)
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
      kill "$p" 2>/dev/null || true
      pids+=("$p")
    fi
  done
  for _ in $(seq 100); do  # up to 10 s, then SIGKILL
    running=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && running=1; done
    [ "$running" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null; done
  for f in "$@"; do rm -f "$f"; done
}

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
