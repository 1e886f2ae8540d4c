# Shared by ./up and ./down (sourced, not executed): paths of the test sshd's state.
D=${CLUSTRIX_TEST_ROOT:-/tmp/clustrix-test}/ssh
CONF=$D/sshd_config
PIDFILE=$D/sshd.pid
LOG=$D/sshd.log
KEY=$D/id_ed25519
KNOWN=$D/known_hosts
TOML=$D/clustrix.toml
SSHD=/usr/sbin/sshd

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }

# True while process $1 exists and is not a zombie (nothing may reap it here).
alive() { readlink "/proc/$1/exe" >/dev/null 2>&1; }

# Prints the PID of OUR sshd listener: the PID file's process, if it is sshd
# started with our config file. Never looks processes up by name.
our_pid() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$SSHD" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$CONF" || return 1
    echo "$pid"
}
