#!/usr/bin/env bash
# A private Docker engine for paddock's tests (run as root).
#
#   scripts/dockerd.sh start   use the engine at $DOCKER_HOST or /var/run/docker.sock if one
#                              answers; otherwise start Debian's dockerd with its own data
#                              root, exec root, pidfile and socket, gVisor registered as
#                              runtime "runsc", and wait until it answers
#   scripts/dockerd.sh env     print `export DOCKER_HOST=...` for the engine to use
#   scripts/dockerd.sh stop    stop the dockerd that this script started (and only that one)
#   scripts/dockerd.sh status  exit 0 if the dockerd that this script started is running
#
# The engine never sets up Docker networks (no bridge, no iptables, no ip_forward): every
# container paddock runs is --network none, and builds use --network host.
# Both start and stop are safe to run twice.
set -euo pipefail

DATA_ROOT=/var/lib/paddock-test-docker
LOG=/var/lib/paddock-test-docker.log
RUN_DIR=/run/paddock-test-docker
EXEC_ROOT=$RUN_DIR/exec
PIDFILE=$RUN_DIR/dockerd.pid
CONFIG=$RUN_DIR/daemon.json
SOCK=$RUN_DIR/docker.sock
OWN_HOST=unix://$SOCK
START_TIMEOUT=${PADDOCK_DOCKERD_TIMEOUT:-60}
STOP_TIMEOUT=30

DOCKERD=/usr/sbin/dockerd
RUNSC=/usr/bin/runsc
# Debian's engine and its helpers (containerd, runc, docker-init, runsc) come first; the
# client at /usr/local/bin/docker, if any, is not used here.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

log() { echo "dockerd.sh: $*" >&2; }
# True while the process runs (a zombie does not count).
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ exit ($3 != "Z") }' "/proc/$1/stat" 2>/dev/null; }
die() { log "error: $*"; exit 1; }

# True when an engine answers /_ping at the given DOCKER_HOST value.
answers() {
  local host=$1
  case "$host" in
    unix://*)
      [ -S "${host#unix://}" ] || return 1
      curl -fsS --max-time 3 --unix-socket "${host#unix://}" http://docker/_ping 2>/dev/null | grep -qx OK ;;
    tcp://*|http://*)
      curl -fsS --max-time 3 "http://${host#*://}/_ping" 2>/dev/null | grep -qx OK ;;
    *)
      # ssh:// and friends: let a client decide.
      DOCKER_HOST=$host timeout 10 docker version >/dev/null 2>&1 ;;
  esac
}

# True if the process is a dockerd that this script started (its command line names our
# pidfile).
is_ours() {
  [ "$(cat "/proc/$1/comm" 2>/dev/null)" = dockerd ] && alive "$1" &&
    tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -qx -- "--pidfile=$PIDFILE"
}

# The pid of the dockerd this script started, if it is still running: from the pidfile, or
# (the pidfile lost) from the process list.
own_pid() {
  local pid p
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  if [[ "$pid" =~ ^[0-9]+$ ]] && is_ours "$pid"; then echo "$pid"; return 0; fi
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = dockerd ] || continue
    if is_ours "${p#/proc/}"; then echo "${p#/proc/}"; return 0; fi
  done
  return 1
}

# The engine to use: ours if it runs, else an existing one, else (not started yet) ours.
engine_host() {
  if own_pid >/dev/null; then echo "$OWN_HOST"; return; fi
  if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != "$OWN_HOST" ] && answers "$DOCKER_HOST"; then
    echo "$DOCKER_HOST"; return
  fi
  if answers unix:///var/run/docker.sock; then echo unix:///var/run/docker.sock; return; fi
  echo "$OWN_HOST"
}

# An engine that we did not start may lack the gVisor runtime: say so (not an error).
warn_no_runsc() {
  local host=$1 info
  case "$host" in unix://*) ;; *) return 0 ;; esac
  info=$(curl -fsS --max-time 5 --unix-socket "${host#unix://}" http://docker/info 2>/dev/null) || return 0
  if ! printf '%s' "$info" | python3 -c 'import json, sys; sys.exit(0 if "runsc" in json.load(sys.stdin).get("Runtimes", {}) else 1)' 2>/dev/null; then
    log "warning: the engine at $host has no runtime named runsc (gVisor tests will fail or skip)"
  fi
}

write_config() {
  # runsc: --network=host makes gVisor use the host network stack *of the container's
  # netns* (paddock enters that netns from the host and places listeners there, which
  # gVisor's own netstack would not see). --platform=ptrace: the test machines are VMs
  # without working nested KVM (ptrace is also this runsc's default; set it explicitly).
  # Nothing else is needed here: cgroups v1 (hybrid) work, and --memory/--pids-limit are
  # applied to the sandbox's cgroup on the host.
  # shutdown-timeout: test containers are disposable; `stop` should not wait 10 s for
  # each one that ignores SIGTERM.
  cat >"$CONFIG.tmp" <<EOF
{
  "runtimes": {
    "runsc": {
      "path": "$RUNSC",
      "runtimeArgs": ["--network=host", "--platform=ptrace", "--oci-seccomp"]
    }
  },
  "storage-driver": "overlay2",
  "shutdown-timeout": 3,
  "log-driver": "json-file",
  "log-opts": { "max-size": "10m", "max-file": "2" }
}
EOF
  mv "$CONFIG.tmp" "$CONFIG"
}

log_tail() {
  local from=${1:-0}
  if [ -f "$LOG" ]; then
    log "last lines of $LOG:"
    tail -c +"$((from + 1))" "$LOG" | tail -n 40 >&2
  fi
}

cmd_start() {
  local pid
  if pid=$(own_pid); then
    if answers "$OWN_HOST"; then
      log "already running: our dockerd (pid $pid) at $OWN_HOST"
      return 0
    fi
    log "our dockerd (pid $pid) runs but does not answer yet; waiting"
    wait_ready "$pid" 0
    return 0
  fi
  if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != "$OWN_HOST" ] && answers "$DOCKER_HOST"; then
    log "using the existing engine at DOCKER_HOST=$DOCKER_HOST (not starting one)"
    warn_no_runsc "$DOCKER_HOST"
    return 0
  fi
  if answers unix:///var/run/docker.sock; then
    log "using the existing engine at unix:///var/run/docker.sock (not starting one)"
    warn_no_runsc unix:///var/run/docker.sock
    return 0
  fi

  [ "$(id -u)" -eq 0 ] || die "must run as root to start dockerd"
  [ -x "$DOCKERD" ] || die "$DOCKERD not found (run scripts/install-test-deps.sh: Debian's docker.io)"
  [ -x "$RUNSC" ] || die "$RUNSC not found (run scripts/install-test-deps.sh: Debian's runsc)"

  # Leftovers of a dockerd of ours that died without cleaning up (a stale pidfile, socket,
  # containerd, containers, mounts).
  rm -f "$PIDFILE" "$SOCK"
  cleanup_leftovers
  mkdir -p "$DATA_ROOT" "$EXEC_ROOT"
  # The socket itself is root:docker 0660, as dockerd makes it.
  chmod 700 "$DATA_ROOT"
  chmod 755 "$RUN_DIR"
  write_config

  local from=0
  [ -f "$LOG" ] && from=$(stat -c %s "$LOG")
  echo "=== $(date -u +%FT%TZ) dockerd.sh start" >>"$LOG"
  # setsid: the engine outlives this shell and is not hit by its terminal's signals;
  # `stop` ends it through the pidfile.
  setsid "$DOCKERD" \
    --config-file="$CONFIG" \
    --data-root="$DATA_ROOT" \
    --exec-root="$EXEC_ROOT" \
    --pidfile="$PIDFILE" \
    --host="$OWN_HOST" \
    --bridge=none \
    --iptables=false \
    --ip6tables=false \
    --ip-forward=false \
    --ip-masq=false \
    </dev/null >>"$LOG" 2>&1 &
  local launched=$!
  disown "$launched" 2>/dev/null || true
  wait_ready "$launched" "$from"
  log "started dockerd (pid $(cat "$PIDFILE" 2>/dev/null || echo "$launched")) at $OWN_HOST; log: $LOG"
}

wait_ready() {
  local pid=$1 from=$2 waited=0
  while ! answers "$OWN_HOST"; do
    # The launched process may be a setsid that forked: then follow the pidfile.
    if ! alive "$pid"; then pid=$(own_pid) || pid=""; fi
    if [ -z "$pid" ]; then
      log "error: dockerd exited before answering"
      log_tail "$from"
      exit 1
    fi
    if ((waited >= START_TIMEOUT * 5)); then
      log "error: dockerd (pid $pid) did not answer at $OWN_HOST within ${START_TIMEOUT}s"
      log_tail "$from"
      exit 1
    fi
    sleep 0.2
    waited=$((waited + 1))
  done
}

# Unmount whatever is still mounted under our data root and exec root, deepest first.
cleanup_mounts() {
  local m
  awk -v a="$DATA_ROOT/" -v b="$EXEC_ROOT/" -v c="$DATA_ROOT" -v d="$EXEC_ROOT" '
    { p = $5; gsub(/\\040/, " ", p)
      if (p == c || p == d || index(p, a) == 1 || index(p, b) == 1) print p }' /proc/self/mountinfo |
    sort -r | while IFS= read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
    done
}

# Processes started by our engine that outlived it: its managed containerd, the shims and
# gVisor's sandbox and gofer processes (all name our exec root on their command line).
leftover_pids() {
  local p
  for p in /proc/[0-9]*; do
    case "$(cat "$p/comm" 2>/dev/null)" in
      containerd|containerd-shim*|exe|runsc*) ;;
      *) continue ;;
    esac
    alive "${p#/proc/}" || continue
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$EXEC_ROOT/" && echo "${p#/proc/}"
  done
  return 0
}

# What a dockerd that died without stopping its containers leaves behind: containers still
# running (runc's and runsc's state is under our exec root), containerd and its shims, a
# stale containerd pidfile (dockerd would wait for that containerd), and mounts. Only
# called while no dockerd of ours runs.
cleanup_leftovers() {
  local state=$EXEC_ROOT/runtime-runc/moby id left i
  if [ -d "$state" ]; then
    for id in $(runc --root "$state" list --quiet 2>/dev/null); do
      runc --root "$state" kill "$id" KILL >/dev/null 2>&1 || true
      runc --root "$state" delete --force "$id" >/dev/null 2>&1 || true
    done
    if [ -x "$RUNSC" ]; then
      for id in $("$RUNSC" --root "$state" list --quiet 2>/dev/null); do
        "$RUNSC" --root "$state" delete --force "$id" >/dev/null 2>&1 || true
      done
    fi
  fi
  left=$(leftover_pids)
  if [ -n "$left" ]; then
    log "ending processes left by an earlier dockerd: $(echo $left)"
    kill -TERM $left 2>/dev/null || true
    for i in $(seq 25); do
      left=$(leftover_pids)
      [ -n "$left" ] || break
      sleep 0.2
    done
    [ -z "$left" ] || kill -KILL $left 2>/dev/null || true
  fi
  rm -f "$EXEC_ROOT/containerd/containerd.pid"
  cleanup_mounts
}

cmd_stop() {
  local pid waited=0
  if pid=$(own_pid); then
    log "stopping our dockerd (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid"; do
      if ((waited >= STOP_TIMEOUT * 5)); then
        log "dockerd (pid $pid) did not exit within ${STOP_TIMEOUT}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
        break
      fi
      sleep 0.2
      waited=$((waited + 1))
    done
  else
    log "no dockerd started by this script is running"
  fi
  cleanup_leftovers
  rm -f "$PIDFILE" "$SOCK"
}

cmd_env() {
  echo "export DOCKER_HOST=$(engine_host)"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  env) cmd_env ;;
  status)
    if pid=$(own_pid) && answers "$OWN_HOST"; then
      echo "our dockerd (pid $pid) answers at $OWN_HOST"
    else
      echo "no dockerd started by this script answers"; exit 1
    fi ;;
  *) echo "usage: $0 start|stop|env|status" >&2; exit 2 ;;
esac
