#!/usr/bin/env bash
# Capture REAL output for jobs that exceed their memory, and of sacct without accounting.
#
# The shared test cluster (tests/clusters/slurm/up) uses SelectTypeParameters=CR_Core and
# TaskPlugin=task/none, where --mem is never enforced. So this script starts a SECOND,
# short-lived SLURM instance next to it (same node, same munged, same slurmdbd; its own
# slurm.conf via SLURM_CONF, ports 6827/6828, state in $ROOT/slurm-oom, cluster name
# clustrixoom) in two variants, submits a job with --mem=100M that allocates 400 MB,
# records the outputs, and stops the instance by its PID files:
#   oom_cgroup_*            TaskPlugin=task/cgroup, cgroup v1 ConstrainRAMSpace -> OUT_OF_MEMORY
#   oom_overmemorykill_*    task/none + JobAcctGatherParams=OverMemoryKill -> FAILED, 0:9
# It also records sacct against a slurm.conf without accounting (sacct_accounting_disabled).
# Files and exit_codes.tsv lines as in capture.sh (lines are appended).
#
# Usage: tests/slurm/data/capture_oom.sh [OUTDIR]   (needs tests/clusters/slurm/up first)
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-${HERE}}"
ROOT="${CLUSTRIX_TEST_ROOT:-/tmp/clustrix-test}"
A="${ROOT}/slurm-oom"
MANIFEST="${OUT}/exit_codes.tsv"
JOBS="${OUT}/jobs.tsv"
[[ -f "${MANIFEST}" ]] || printf 'case\trc\tcommand\n' >"${MANIFEST}"
[[ -f "${JOBS}" ]] || printf 'name\tjob_id\tsubmitted_with\n' >"${JOBS}"
_SCRIPT_NAME="capture_oom"
# shellcheck source-path=SCRIPTDIR source=../../clusters/slurm/lib.sh
source "${HERE}/../../clusters/slurm/lib.sh"
MAIN_CONF="/etc/slurm/slurm.conf"

note() { printf '[capture_oom] %s\n' "$*" >&2; }

cap() {
    local name="$1" cmd="$2" rc=0
    bash -c "${cmd}" >"${OUT}/${name}.txt" 2>"${OUT}/${name}.stderr.txt" || rc=$?
    [[ -s "${OUT}/${name}.stderr.txt" ]] || rm -f -- "${OUT}/${name}.stderr.txt"
    printf '%s\t%s\t%s\n' "${name}" "${rc}" "${cmd}" >>"${MANIFEST}"
    note "${name}: rc ${rc}"
}

stop_alt() {
    stop_pidfile "${A}/run/slurmd.pid" slurmd
    stop_pidfile "${A}/run/slurmctld.pid" slurmctld
}
trap stop_alt EXIT

# start_alt VARIANT -> (re)write ${A}/slurm.conf + cgroup.conf from /etc/slurm/slurm.conf, start
start_alt() {
    local variant="$1" i st=""
    stop_alt
    # the state dir is kept across variants and runs, so job ids keep increasing and
    # sacct -j never sees two jobs of cluster clustrixoom with the same id
    rm -f -- "${A}/slurm.conf" "${A}/cgroup.conf"
    mkdir -p -- "${A}/state" "${A}/spool" "${A}/log" "${A}/run"
    local sed_args=(
        -e 's/^ClusterName=.*/ClusterName=clustrixoom/'
        -e 's/^SlurmctldPort=.*/SlurmctldPort=6827/'
        -e 's/^SlurmdPort=.*/SlurmdPort=6828/'
        -e "s#${S}/#${A}/#g"
        -e 's/^SelectTypeParameters=.*/SelectTypeParameters=CR_Core_Memory\nDefMemPerCPU=1000/'
        -e '/^JobAcctGather/d'
    )
    if [[ "${variant}" == cgroup ]]; then
        sed_args+=(-e 's#^TaskPlugin=.*#TaskPlugin=task/cgroup#')
        printf 'CgroupPlugin=cgroup/v1\nConstrainRAMSpace=yes\nConstrainSwapSpace=yes\nAllowedSwapSpace=0\n' >"${A}/cgroup.conf"
    else
        printf 'CgroupPlugin=autodetect\n' >"${A}/cgroup.conf"
    fi
    sed "${sed_args[@]}" "${MAIN_CONF}" >"${A}/slurm.conf"
    printf 'JobAcctGatherType=jobacct_gather/linux\nJobAcctGatherFrequency=task=1\n' >>"${A}/slurm.conf"
    if [[ "${variant}" != cgroup ]]; then
        printf 'JobAcctGatherParams=OverMemoryKill\n' >>"${A}/slurm.conf"
    fi
    export SLURM_CONF="${A}/slurm.conf"
    if ! sacctmgr -n -P show cluster format=cluster | grep -qx clustrixoom; then
        sacctmgr -i add cluster clustrixoom >&2
    fi
    slurmctld 9>&-
    slurmd -N localhost 9>&-
    for ((i = 0; i < 100; i++)); do
        st="$(sinfo -h -n localhost -o %T 2>/dev/null | head -n 1 || true)"
        [[ "${st}" == idle ]] && return 0
        sleep 0.2
    done
    die "alternate instance not idle (${st})"
}

oom_case() {
    local tag="$1" id i st=""
    # the recorded commands name the alternate instance's configuration
    local env="SLURM_CONF=${SLURM_CONF}"
    cap "sbatch_parsable_${tag}" "cd ${A} && ${env} sbatch --parsable -J cx-${tag} --mem=100M -o ${A}/${tag}.out --wrap \"python3 -c 'import time; x = bytearray(400 * 1024 * 1024); time.sleep(30)'\""
    id="$(<"${OUT}/sbatch_parsable_${tag}.txt")"
    printf '%s\t%s\t%s\n' "${tag}" "${id}" "(case sbatch_parsable_${tag}, cluster clustrixoom)" >>"${JOBS}"
    for ((i = 0; i < 300; i++)); do
        st="$(scontrol show job -o "${id}" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')"
        [[ "${st}" != PENDING && "${st}" != RUNNING && "${st}" != CONFIGURING && "${st}" != COMPLETING ]] && break
        sleep 0.2
    done
    for ((i = 0; i < 50; i++)); do
        [[ "$(sacct -n -X -P -j "${id}" -o State)" == "${st}"* ]] && break
        sleep 0.2
    done
    sleep 1
    cap "scontrol_show_job_${tag}" "${env} scontrol show job ${id}"
    cap "scontrol_show_job_oneline_${tag}" "${env} scontrol show job -o ${id}"
    cap "squeue_${tag}" "${env} squeue -h -t all -j ${id} -o '%i|%T|%r'"
    cap "sacct_X_${tag}" "${env} sacct --parsable2 -n -X -j ${id} -o JobID,State,ExitCode,Reason"
    cap "sacct_steps_${tag}" "${env} sacct --parsable2 -n -j ${id} --format JobIDRaw,JobID,State,ExitCode,DerivedExitCode,Reason"
    cp -- "${A}/${tag}.out" "${OUT}/job_output_${tag}.txt"
}

start_alt cgroup
oom_case oom_cgroup
start_alt overmemorykill
oom_case oom_overmemorykill
stop_alt

# sacct when the slurm.conf has no accounting (as on sites without slurmdbd)
NOACCT="${A}/slurm-noacct.conf"
grep -v '^AccountingStorage' "${MAIN_CONF}" >"${NOACCT}"
cap sacct_accounting_disabled "SLURM_CONF=${NOACCT} sacct --parsable2 -n -X -j 1 -o JobID,State,ExitCode,Reason"
note "done: ${OUT}"
