#!/usr/bin/env bash
# Stop the one-node cluster that scripts/slurm/up.sh started in DIR: cancel its jobs,
# stop slurmd, slurmctld and munged, and remove the folder. Safe to run twice.
#
#   scripts/slurm/down.sh [DIR]    # DIR defaults to $LAWA_SLURM_DIR or /tmp/lawa-slurm
set -uo pipefail

DIR=${1:-${LAWA_SLURM_DIR:-/tmp/lawa-slurm}}
[ -d "$DIR" ] || exit 0
DIR=$(cd "$DIR" && pwd)
export SLURM_CONF="$DIR/slurm.conf"

if [ -f "$SLURM_CONF" ] && [ -f "$DIR/slurmctld.pid" ]; then
  scancel --full --quiet --user "$(id -un)" 2>/dev/null || true
  # Let slurmd see its jobs' processes end before it stops.
  for _ in $(seq 1 100); do
    [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
    sleep 0.1
  done
fi

stop() { # pid file, name
  [ -f "$1" ] || return 0
  local pid
  pid=$(cat "$1")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    echo "slurm down: $2 ($pid) did not stop on SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null
  fi
}
stop "$DIR/slurmd.pid" slurmd
stop "$DIR/slurmctld.pid" slurmctld
stop "$DIR/munge/munged.pid" munged
rm -rf "$DIR"
