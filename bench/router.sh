#!/usr/bin/env bash
# Router benchmark, one command: bench/router.sh [DURATION_SECONDS] [CONNECTIONS]
#
# Measures wrk (requests/s and p99) against, side by side:
#   backend   nginx serving a small static file on 127.0.0.1 (the common backend)
#   nginx     nginx reverse-proxying that backend (HTTP/1.1 upstream keep-alive, the same
#             forwarding headers the router adds)
#   router    paddock-router reverse-proxying it (release build; a loopback Dialer, so this
#             measures the router itself, not a network namespace)
# and prints the router's ratios against nginx. Installs nginx and wrk from Debian when
# missing. Everything listens on 127.0.0.1 only; each measurement is bounded in time.
# Results go to the "library" section of bench/ROUTER_RESULTS.md. bench/router_daemon.sh
# measures the real path (the daemon, a sandboxed backend, the dial into its netns).
set -euo pipefail
cd "$(dirname "$0")/.."
dur="${1:-5}"
conns="${2:-32}"
threads=2
rounds="${ROUNDS:-2}"

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} for the comparison"
  apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

cargo build --release --quiet -p paddock-router --bin paddock-router-bench
ROUTER="$PWD/target/release/paddock-router-bench"

BACKEND_PORT=18181 NGINX_PORT=18182 ROUTER_PORT=18183
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/www" "$tmp/b" "$tmp/p"
chmod 755 "$tmp" "$tmp/www"   # nginx workers run as an unprivileged user
head -c 612 /dev/zero | tr '\0' 'x' > "$tmp/www/index.html"   # nginx's welcome page size

common="pid PIDFILE; error_log stderr warn; events { worker_connections 4096; }"
cat > "$tmp/b/nginx.conf" <<CONF
worker_processes 1; ${common//PIDFILE/$tmp/b/nginx.pid}
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $tmp/b; proxy_temp_path $tmp/b; fastcgi_temp_path $tmp/b;
  uwsgi_temp_path $tmp/b; scgi_temp_path $tmp/b;
  server { listen 127.0.0.1:$BACKEND_PORT; root $tmp/www; } }
CONF
cat > "$tmp/p/nginx.conf" <<CONF
worker_processes auto; ${common//PIDFILE/$tmp/p/nginx.pid}
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $tmp/p; proxy_temp_path $tmp/p; fastcgi_temp_path $tmp/p;
  uwsgi_temp_path $tmp/p; scgi_temp_path $tmp/p;
  upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 32; }
  server { listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header Forwarded "for=\$remote_addr;host=\"\$http_host\";proto=\$scheme";
    } } }
CONF

"$NGINX" -p "$tmp/b" -c "$tmp/b/nginx.conf" -g 'daemon off;' & pids+=($!); backend_pid=$!
"$NGINX" -p "$tmp/p" -c "$tmp/p/nginx.conf" -g 'daemon off;' & pids+=($!); nginx_pid=$!
"$ROUTER" "$ROUTER_PORT" "$BACKEND_PORT" 2>/dev/null & pids+=($!); router_pid=$!

for port in $BACKEND_PORT $NGINX_PORT $ROUTER_PORT; do
  for _ in $(seq 1 100); do
    curl -s -o /dev/null -H 'Host: web.bench.localhost' "http://127.0.0.1:$port/index.html" && break
    sleep 0.1
  done
done
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: web.bench.localhost' "http://127.0.0.1:$ROUTER_PORT/index.html")
[ "$code" = 200 ] || { echo "router answered $code, not 200" >&2; exit 1; }

# CPU ticks (user+system) used so far by a process and its children processes (nginx
# workers); threads are included in a process's own figures.
ticks() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
hz=$(getconf CLK_TCK)

# wrk → "RPS P99_MS CPU_US_PER_REQUEST"; the CPU figure is what the process under test
# spent per request, far less sensitive to other load on the machine than requests/s.
measure() {
  local port=$1 pid=$2 out rps p99 v unit t0 t1 n cpu
  t0=$(ticks "$pid")
  out=$(wrk -t"$threads" -c"$conns" -d"${dur}s" --latency -H 'Host: web.bench.localhost' \
        "http://127.0.0.1:$port/index.html")
  t1=$(ticks "$pid")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$n" 'BEGIN{ if (n>0) printf "%.2f", d/hz*1e6/n; else print 0 }')
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  v=$(awk '$1=="99%" {print $2}' <<<"$out")
  unit=${v//[0-9.]/}; v=${v%"$unit"}
  case "$unit" in us) p99=$(awk -v x="$v" 'BEGIN{print x/1000}');; ms) p99=$v;;
    s) p99=$(awk -v x="$v" 'BEGIN{print x*1000}');; *) p99=$v;; esac
  echo "$rps $p99 $cpu"
}

all_rounds=""
declare -A RPS P99 CPU
for name in backend nginx router; do RPS[$name]=0; P99[$name]=0; CPU[$name]=0; done
port_of() { case $1 in backend) echo $BACKEND_PORT;; nginx) echo $NGINX_PORT;; router) echo $ROUTER_PORT;; esac; }
pid_of() { case $1 in backend) echo $backend_pid;; nginx) echo $nginx_pid;; router) echo $router_pid;; esac; }
load=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$rounds"); do
  for name in backend nginx router; do
    port=$(port_of $name)
    wrk -t1 -c"$conns" -d1s -H 'Host: web.bench.localhost' "http://127.0.0.1:$port/index.html" >/dev/null  # warm-up
    read -r rps p99 cpu < <(measure "$port" "$(pid_of $name)")
    line="round $r: $name ${rps} req/s, p99 ${p99} ms, ${cpu} µs CPU/request"
    echo "  $line"
    all_rounds+="    $line"$'\n'

    # keep each side's best round (highest req/s, with its p99 and CPU)
    if awk -v a="$rps" -v b="${RPS[$name]}" 'BEGIN{exit !(a>b)}'; then RPS[$name]=$rps; P99[$name]=$p99; CPU[$name]=$cpu; fi
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
rr=$(ratio "${RPS[router]}" "${RPS[nginx]}")
pr=$(ratio "${P99[router]}" "${P99[nginx]}")
cr=$(ratio "${CPU[router]}" "${CPU[nginx]}")
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) cores)"
table=$(printf '| target | requests/s | p99 (ms) | CPU µs/request | vs nginx |\n|---|---:|---:|---:|---|\n| backend (nginx static, direct) | %s | %s | %s | |\n| nginx reverse proxy | %s | %s | %s | 1.00× |\n| paddock-router | %s | %s | %s | **%s×** req/s, **%s×** p99, %s× CPU/request |\n' \
  "${RPS[backend]}" "${P99[backend]}" "${CPU[backend]}" "${RPS[nginx]}" "${P99[nginx]}" "${CPU[nginx]}" "${RPS[router]}" "${P99[router]}" "${CPU[router]}" "$rr" "$pr" "$cr")
echo
echo "$table"
echo
echo "target: router ≥ 1.00× nginx req/s and p99 ≤ 1.20× nginx"

section=$(cat <<MD
## The router crate alone (loopback dialer)

Command: \`bench/router.sh $dur $conns\` (wrk -t$threads -c$conns -d${dur}s --latency, best of $rounds rounds,
1 s warm-up each), $(date -u +%Y-%m-%d), $cpu, $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}').

All on 127.0.0.1 and the same cores: wrk, the backend (nginx, 1 worker, a 612-byte static
file), and the proxy under test. The nginx proxy has \`worker_processes auto\`, HTTP/1.1
upstream keep-alive (32) and sets the same forwarding headers as the router. The router is
\`paddock-router-bench\` (release build; the router's own threads: one current-thread
tokio runtime per worker, as many workers as CPUs up to 4) with a loopback \`Dialer\`, so
the figures are the router's own cost, not a network namespace's (see the next section
for that). "CPU µs/request" is the user+system CPU the process under test (with its worker
processes) spent per completed request: on a machine shared with other work it is the
steadier figure; requests/s and p99 move with whatever else runs.

$table

Target: router ≥ 1.00× nginx's requests/s, with p99 ≤ 1.20× nginx's.

Every round (load average at the start: $load; the machine is shared, so rounds vary):

$all_rounds
MD
)
bench/splice_section.sh bench/ROUTER_RESULTS.md library "$section"
echo "wrote the library section of bench/ROUTER_RESULTS.md"
