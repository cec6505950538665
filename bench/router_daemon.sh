#!/usr/bin/env bash
# Router benchmark through the real path, one command:
#   bench/router_daemon.sh [DURATION_SECONDS] [CONNECTIONS]
#
# Where bench/router.sh measures the router crate as a library (a loopback dialer), this
# measures what users get: the paddock daemon (release build) with PADDOCK_ROUTER_PORT set,
# a run started with `paddock run -d -p web=8000 -p close=8001`, and inside that sandbox
# nginx (the host's /usr/sbin/nginx, a config written into the workspace, pid and temp
# files under the sandbox's /tmp) serving a small static file on 127.0.0.1. wrk asks
# web.bench.localhost:PORT, so each request crosses the router and, for each new backend
# connection, the dial into the run's network namespace.
#
# Side by side, the same on the host without a sandbox: the same nginx backend config on
# 127.0.0.1, and nginx (Debian package) reverse-proxying it (HTTP/1.1 upstream keep-alive,
# the forwarding headers the router adds). Two backends each:
#   keep-alive   the backend keeps connections open: the router's pool reuses them
#   close        the backend closes after every response (keepalive_timeout 0): every
#                request is a new backend connection, so the per-connection dial shows
# Prints requests/s, p99 and CPU per request and the router's ratios against nginx
# (targets: ≥ 1.0× nginx's requests/s, p99 ≤ 1.2× nginx's). Needs root (the daemon's
# setns dial path); installs nginx and wrk from Debian when missing. Everything listens
# on 127.0.0.1 only. Results go to the "daemon" section of bench/ROUTER_RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
dur="${1:-5}"
conns="${2:-32}"
threads=2
rounds="${ROUNDS:-2}"

[ "$(id -u)" = 0 ] || { echo "bench/router_daemon.sh needs root (the daemon as root dials with setns)" >&2; exit 2; }
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} for the comparison"
  apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

# PADDOCK=/path/to/paddock measures that binary instead of building one.
if [ -z "${PADDOCK:-}" ]; then
  cargo build --release --quiet -p paddock-cli
  PADDOCK="$PWD/target/release/paddock"
fi

BACKEND_PORT=18191 NGINX_PORT=18192 ROUTER_PORT=18193 BACKEND_CLOSE_PORT=18194 NGINX_CLOSE_PORT=18195
tmp="$(mktemp -d)"
pids=()
export PADDOCK_HOME="$tmp/home" XDG_CONFIG_HOME="$tmp/config" PADDOCK_ROUTER_PORT="$ROUTER_PORT"
export PADDOCK_IDLE_TIMEOUT=0
unset PADDOCK_LOG
cleanup() {
  "$PADDOCK" rm --force bench >/dev/null 2>&1 || true
  "$PADDOCK" daemon stop >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/ws/www" "$tmp/b" "$tmp/p" "$tmp/config"
chmod 755 "$tmp" "$tmp/ws" "$tmp/ws/www"   # nginx workers may run as another user
head -c 612 /dev/zero | tr '\0' 'x' > "$tmp/ws/www/index.html"   # nginx's welcome page size

# The backend: one nginx worker, a keep-alive server and one that closes after each
# response. PREFIX is where pid and temp files go ($tmp/b on the host, /tmp/ngx inside).
backend_conf() { # PREFIX ROOT KEEP_PORT CLOSE_PORT
  cat <<CONF
worker_processes 1; pid $1/nginx.pid; error_log stderr warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1;
  uwsgi_temp_path $1; scgi_temp_path $1;
  server { listen 127.0.0.1:$3; root $2; }
  server { listen 127.0.0.1:$4; root $2; keepalive_timeout 0; } }
CONF
}
backend_conf "$tmp/b" "$tmp/ws/www" $BACKEND_PORT $BACKEND_CLOSE_PORT > "$tmp/b/nginx.conf"
backend_conf /tmp/ngx "$tmp/ws/www" 8000 8001 > "$tmp/ws/backend.conf"

proxy_server() { # LISTEN_PORT UPSTREAM
  cat <<CONF
  server { listen 127.0.0.1:$1;
    location / {
      proxy_pass http://$2;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header Forwarded "for=\$remote_addr;host=\"\$http_host\";proto=\$scheme";
    } }
CONF
}
cat > "$tmp/p/nginx.conf" <<CONF
worker_processes auto; pid $tmp/p/nginx.pid; error_log stderr warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $tmp/p; proxy_temp_path $tmp/p; fastcgi_temp_path $tmp/p;
  uwsgi_temp_path $tmp/p; scgi_temp_path $tmp/p;
  upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 32; }
  upstream closing { server 127.0.0.1:$BACKEND_CLOSE_PORT; keepalive 32; }
$(proxy_server $NGINX_PORT backend)
$(proxy_server $NGINX_CLOSE_PORT closing)
}
CONF

"$NGINX" -p "$tmp/b" -c "$tmp/b/nginx.conf" -g 'daemon off;' & pids+=($!)
"$NGINX" -p "$tmp/p" -c "$tmp/p/nginx.conf" -g 'daemon off;' & pids+=($!); nginx_pid=$!

# The daemon starts on demand; the run's nginx serves inside its sandbox.
"$PADDOCK" daemon stop >/dev/null 2>&1 || true
cd "$tmp/ws"
"$PADDOCK" run -d -q --name bench -p web=8000 -p close=8001 -- \
  sh -c "mkdir -p /tmp/ngx && exec $NGINX -p /tmp/ngx -c $tmp/ws/backend.conf -e stderr -g 'daemon off;'" >/dev/null
cd - >/dev/null
daemon_pid=$("$PADDOCK" daemon status --json | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' | head -1)
[ -n "$daemon_pid" ] || { echo "no daemon pid" >&2; exit 1; }

host_of() { case $1 in *close) echo close.bench.localhost;; *) echo web.bench.localhost;; esac; }
port_of() {
  case $1 in
    backend) echo $BACKEND_PORT;; nginx) echo $NGINX_PORT;; router) echo $ROUTER_PORT;;
    backend-close) echo $BACKEND_CLOSE_PORT;; nginx-close) echo $NGINX_CLOSE_PORT;; router-close) echo $ROUTER_PORT;;
  esac
}
pid_of() { case $1 in backend*) echo "${pids[0]}";; nginx*) echo $nginx_pid;; router*) echo "$daemon_pid";; esac; }

for name in backend nginx router backend-close nginx-close router-close; do
  ok=""
  for _ in $(seq 1 150); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $(host_of $name)" "http://127.0.0.1:$(port_of $name)/index.html" || true)
    [ "$code" = 200 ] && { ok=1; break; }
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "$name never answered 200 (last: $code); daemon log:" >&2; tail -20 "$PADDOCK_HOME/daemon.log" >&2; exit 1; }
done

ticks() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
hz=$(getconf CLK_TCK)

# wrk → "RPS P99_MS CPU_US_PER_REQUEST" (CPU of the process under test per request).
measure() { # NAME
  local name=$1 out rps p99 v unit t0 t1 n cpu pid
  pid=$(pid_of "$name")
  t0=$(ticks "$pid")
  out=$(wrk -t"$threads" -c"$conns" -d"${dur}s" --latency -H "Host: $(host_of "$name")" \
        "http://127.0.0.1:$(port_of "$name")/index.html")
  t1=$(ticks "$pid")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$n" 'BEGIN{ if (n>0) printf "%.2f", d/hz*1e6/n; else print 0 }')
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  v=$(awk '$1=="99%" {print $2}' <<<"$out")
  unit=${v//[0-9.]/}; v=${v%"$unit"}
  case "$unit" in us) p99=$(awk -v x="$v" 'BEGIN{print x/1000}');; ms) p99=$v;;
    s) p99=$(awk -v x="$v" 'BEGIN{print x*1000}');; *) p99=$v;; esac
  if grep -q 'Non-2xx' <<<"$out"; then echo "warning: $name: $(grep 'Non-2xx' <<<"$out")" >&2; fi
  echo "$rps $p99 $cpu"
}

names=(backend nginx router backend-close nginx-close router-close)
all_rounds=""
declare -A RPS P99 CPU
for name in "${names[@]}"; do RPS[$name]=0; P99[$name]=0; CPU[$name]=0; done
load=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$rounds"); do
  for name in "${names[@]}"; do
    wrk -t1 -c"$conns" -d1s -H "Host: $(host_of $name)" "http://127.0.0.1:$(port_of $name)/index.html" >/dev/null  # warm-up
    read -r rps p99 cpu < <(measure "$name")
    line="round $r: $name ${rps} req/s, p99 ${p99} ms, ${cpu} µs CPU/request"
    echo "  $line"
    all_rounds+="    $line"$'\n'
    if awk -v a="$rps" -v b="${RPS[$name]}" 'BEGIN{exit !(a>b)}'; then RPS[$name]=$rps; P99[$name]=$p99; CPU[$name]=$cpu; fi
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
row() { # LABEL NAME [VS]
  local vs=""
  if [ -n "${3:-}" ]; then
    vs="**$(ratio "${RPS[$2]}" "${RPS[$3]}")×** req/s, **$(ratio "${P99[$2]}" "${P99[$3]}")×** p99, $(ratio "${CPU[$2]}" "${CPU[$3]}")× CPU/request"
  fi
  printf '| %s | %s | %s | %s | %s |\n' "$1" "${RPS[$2]}" "${P99[$2]}" "${CPU[$2]}" "$vs"
}
table=$(
  printf '| target | requests/s | p99 (ms) | CPU µs/request | vs nginx |\n|---|---:|---:|---:|---|\n'
  row "backend, keep-alive (nginx static on the host, direct)" backend
  row "nginx reverse proxy → host backend, keep-alive" nginx
  row "paddock daemon router → backend in a sandbox, keep-alive" router nginx
  row "backend, closes after each response (direct)" backend-close
  row "nginx reverse proxy → closing host backend" nginx-close
  row "paddock daemon router → closing backend in a sandbox" router-close nginx-close
)
echo
echo "$table"
echo
echo "target: router ≥ 1.00× nginx req/s and p99 ≤ 1.20× nginx"

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) cores)"
section=$(cat <<MD
## Through the daemon (the real path)

Command: \`bench/router_daemon.sh $dur $conns\` (wrk -t$threads -c$conns -d${dur}s --latency, best of
$rounds rounds, 1 s warm-up each), $(date -u +%Y-%m-%d), $cpu, $("$NGINX" -v 2>&1 | sed 's/.*: //'),
$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), paddock $("$PADDOCK" --version | awk '{print $2, $3}'), daemon as root.

The paddock daemon (release build, \`PADDOCK_ROUTER_PORT=$ROUTER_PORT\`) with one run started by
\`paddock run -d -p web=8000 -p close=8001\`, whose command is nginx (1 worker, a 612-byte
static file) on the sandbox's 127.0.0.1. wrk asks \`web.bench.localhost\` /
\`close.bench.localhost\` on the router's port, so every request crosses the router, and
every new backend connection is a socket made in the run's network namespace. nginx on
the host (\`worker_processes auto\`, upstream keep-alive 32, the router's forwarding
headers) proxies the same backend config running on the host. The "close" backend has
\`keepalive_timeout 0\`: one backend connection per request, so the dial into the
namespace is on every request's path. CPU µs/request is the process under test's CPU
(the daemon, or nginx and its workers) per completed request.

$table

Target: router ≥ 1.00× nginx's requests/s, with p99 ≤ 1.20× nginx's.

Every round (load average at the start: $load; the machine is shared, so rounds vary):

$all_rounds
MD
)
bench/splice_section.sh bench/ROUTER_RESULTS.md daemon "$section"
echo "wrote the daemon section of bench/ROUTER_RESULTS.md"
