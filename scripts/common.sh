# Helpers shared by the benchmark and soak scripts (sourced, not run): stopping processes,
# finding free ports and waiting for them.

SYS_PY=${SYS_PY:-/usr/bin/python3}

# Stops a process: SIGTERM, then SIGKILL after `seconds` (default 10). Nothing when not running.
stop() { # pid [seconds]
    local pid=$1 grace=${2:-10} i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# A TCP port nobody listens on now.
free_port() {
    "$SYS_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until `port` listens on loopback; fails after `seconds`, or as soon as `pid` (when
# given) has exited.
wait_port() { # port seconds [pid]
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        port_open "$1" && return 0
        [[ -z ${3:-} ]] || kill -0 "$3" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
