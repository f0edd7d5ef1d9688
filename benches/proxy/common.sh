# Sourced by load.sh, instructions.sh and ../e2e/run.sh.
#
#   nginx_conf DIR UPSTREAM_PORT LISTEN_PORT WORKERS [single]  > DIR/nginx.conf
#
# nginx as a plain reverse proxy with upstream keepalive, set up as the proxies under
# test are (X-Forwarded-For/-Proto, Host kept, no buffering); `single`: one process
# (`master_process off`), for callgrind.
#
#   wait_port PORT
#
# Waits up to 30 s for 127.0.0.1:PORT to accept; else prints $WORK/*.log and exits.
#
#   cpu_ticks PID...      user_ticks PID...
#
# CPU time (user + system, all threads, in clock ticks of `getconf CLK_TCK`) the
# processes have used: on a shared machine the CPU cost per request is steadier than
# req/s, which depends on the CPU share each process gets. user_ticks: user time only.
proc_ticks() { # proc_ticks AWK_EXPR PID...: the sum of AWK_EXPR over /proc/PID/stat
    local total=0 pid t
    for pid in "${@:2}"; do
        t="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk "{print $1}")"
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
cpu_ticks() { proc_ticks '$12 + $13' "$@"; }
user_ticks() { proc_ticks '$12' "$@"; }

wait_port() {
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "port $1 did not open" >&2; cat "$WORK"/*.log >&2; exit 1
}

nginx_conf() {
    local dir="$1" upstream="$2" listen="$3" workers="$4" single="${5:-}"
    mkdir -p "$dir/nginx/logs"
    echo "worker_processes $workers;"
    if [ "$single" = single ]; then echo "master_process off;"; echo "daemon off;"; fi
    cat <<EOF
pid $dir/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    upstream backend {
        server 127.0.0.1:$upstream;
        keepalive 256;
    }
    server {
        listen 127.0.0.1:$listen;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_buffering off;
        }
    }
}
EOF
}
