# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared by tests/clusters/slurm/up and tests/clusters/slurm/down (sourced, not run).
# Paths, logging and PID-file based process control for the single-node test SLURM.

# sbin dirs appended (not prepended): the machine's python3 (pyenv) must stay first on PATH
export PATH="${PATH}:/usr/local/sbin:/usr/sbin:/sbin"

TEST_ROOT="${CLUSTRIX_TEST_ROOT:-/tmp/clustrix-test}"
S="${TEST_ROOT}/slurm"             # state dir of this cluster
S_RUN="${S}/run"                   # pid files, sockets, markers
S_LOG="${S}/log"                   # daemon logs, jobcomp file
S_STATE="${S}/state"               # slurmctld StateSaveLocation
S_SPOOL="${S}/spool"               # slurmd SlurmdSpoolDir
S_DB="${S}/mariadb"                # private MariaDB datadir
S_ETC="${S}/etc"                   # secrets (db password), copies of generated configs

SLURM_CONF="/etc/slurm/slurm.conf"
SLURMDBD_CONF="/etc/slurm/slurmdbd.conf"
CGROUP_CONF="/etc/slurm/cgroup.conf"

PID_SLURMCTLD="${S_RUN}/slurmctld.pid"
PID_SLURMD="${S_RUN}/slurmd.pid"
PID_SLURMDBD="${S_RUN}/slurmdbd.pid"
PID_MARIADB="${S_RUN}/mariadb.pid"
PID_MUNGED="/run/munge/munged.pid"
MUNGED_OURS="${S_RUN}/munged.started-here"   # holds the munged pid when this script started it
MARIADB_SOCK="${S_RUN}/mariadb.sock"
MARIADB_PORT="3307"

_T0="${EPOCHREALTIME}"

log() {
    local now="${EPOCHREALTIME}"
    # elapsed seconds with two decimals, without forking
    local el
    el="$(awk -v a="${_T0}" -v b="${now}" 'BEGIN { printf "%.2f", b - a }')"
    printf '[slurm %s +%ss] %s\n' "${_SCRIPT_NAME:-lib}" "${el}" "$*" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

# Print the last lines of every daemon log (to stderr) for a failure report.
log_tails() {
    local f
    for f in "${S_LOG}/slurmctld.log" "${S_LOG}/slurmd.log" "${S_LOG}/slurmdbd.log" \
             "${S_LOG}/mariadb.log" "/var/log/munge/munged.log"; do
        if [[ -f "${f}" ]]; then
            printf '\n===== tail -n 30 %s =====\n' "${f}" >&2
            tail -n 30 -- "${f}" >&2 || true
        fi
    done
}

# read_pid PIDFILE -> prints the pid if the file holds a number
read_pid() {
    local pidfile="$1" pid=""
    [[ -r "${pidfile}" ]] || return 1
    read -r pid <"${pidfile}" || true
    pid="${pid//[[:space:]]/}"
    [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
    printf '%s\n' "${pid}"
}

# proc_is PID COMM -> true if process PID is alive and its comm is COMM. A zombie is not
# alive: here PID 1 does not always reap orphaned daemons at once, and a killed daemon
# can stay a zombie (comm still readable) with its pid file still naming it.
proc_is() {
    local pid="$1" comm="$2" actual="" stat rest
    [[ -r "/proc/${pid}/comm" ]] || return 1
    read -r actual <"/proc/${pid}/comm" 2>/dev/null || return 1
    [[ "${actual}" == "${comm}" ]] || return 1
    stat="$(cat "/proc/${pid}/stat" 2>/dev/null)" || return 1
    rest="${stat##*) }"      # fields after "(comm) "; the first is the state letter
    [[ "${rest:0:1}" != Z && "${rest:0:1}" != X ]]
}

# pid_alive PIDFILE COMM -> true if the pid in PIDFILE is alive and its comm is COMM
# (the comm check guards against a stale pid file whose number was reused).
pid_alive() {
    local pidfile="$1" comm="$2" pid
    pid="$(read_pid "${pidfile}")" || return 1
    proc_is "${pid}" "${comm}"
}

# term_pidfile PIDFILE COMM -> send SIGTERM only (to stop several daemons in parallel;
# follow with stop_pidfile for each to wait for them)
term_pidfile() {
    local pidfile="$1" comm="$2" pid
    pid_alive "${pidfile}" "${comm}" || return 0
    pid="$(read_pid "${pidfile}")"
    log "sending SIGTERM to ${comm} (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
}

# stop_pidfile PIDFILE COMM [TIMEOUT] -> SIGTERM the process named by PIDFILE, wait for
# that pid to exit, SIGKILL after TIMEOUT seconds. Never looks processes up by name.
stop_pidfile() {
    local pidfile="$1" comm="$2" timeout="${3:-30}" pid i
    if ! pid_alive "${pidfile}" "${comm}"; then
        rm -f -- "${pidfile}"
        return 0
    fi
    pid="$(read_pid "${pidfile}")"
    log "stopping ${comm} (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        proc_is "${pid}" "${comm}" || break
        sleep 0.1
    done
    if proc_is "${pid}" "${comm}"; then
        log "${comm} (pid ${pid}) did not exit after ${timeout}s, sending SIGKILL"
        kill -KILL "${pid}" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            proc_is "${pid}" "${comm}" || break
            sleep 0.1
        done
        proc_is "${pid}" "${comm}" && die "${comm} (pid ${pid}) survived SIGKILL"
    fi
    # some daemons remove their pid file themselves; remove it if it still names this pid
    if [[ "$(read_pid "${pidfile}" || true)" == "${pid}" ]]; then
        rm -f -- "${pidfile}"
    fi
    return 0
}

# wait_for SECONDS COMMAND... -> run COMMAND every 0.1 s until it succeeds; false after
# SECONDS (wall clock, however long each try takes)
wait_for() {
    local secs="$1" end
    shift
    end=$((SECONDS + secs))
    until "$@"; do
        ((SECONDS < end)) || return 1
        sleep 0.1
    done
}

# Serialise concurrent up/down runs on this state dir (fd 9). Every daemon and child
# script must be started with "9>&-": a daemon that inherits fd 9 holds the lock forever.
take_lock() {
    mkdir -p -- "${S}"
    exec 9>"${S}/.lock"
    if ! flock -w 900 9; then
        die "could not lock ${S}/.lock within 900 s (another up/down still running?)"
    fi
}
