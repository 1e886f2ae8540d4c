# Shared by ./up and ./down (sourced, not executed): paths of the emulator's state.
D=${CLUSTRIX_TEST_ROOT:-/tmp/clustrix-test}/k8s
PIDFILE=$D/emulator.pid
LOG=$D/emulator.log
TOML=$D/clustrix.toml
KUBECONFIG_PATH=$D/kubeconfig
CONFIG_JSON=$D/config.json
SERVER_JSON=$D/server.json

log() { printf '%s: %s\n' "k8s/$(basename "$0")" "$*" >&2; }

# True while process $1 exists and is not a zombie.
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# Prints the PID of OUR emulator: the PID file's process, if its command line names
# kube_emulator and our state dir. Never looks processes up by name.
our_pid() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "kube_emulator .*--state-dir $D" || return 1
    echo "$pid"
}
