# slurm-common.sh -- sourced by slurm-up.sh and slurm-down.sh (set SCRIPT_NAME first): the paths both
# use, logging, and taking the lock that keeps the two from running at the same time.

RUN_DIR=/run/beambridge-slurm          # our own bookkeeping: lock, what we started
CTLD_PID=/run/slurmctld.pid

log() { echo "[$SCRIPT_NAME $(date +%T)] $*"; }
die() { echo "[$SCRIPT_NAME $(date +%T)] ERROR: $*" >&2; exit 1; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }

take_lock() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/lock"
  flock -w 300 9 || die "another slurm-up/slurm-down is still running"
}

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
