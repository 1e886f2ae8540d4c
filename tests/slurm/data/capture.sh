#!/usr/bin/env bash
# Capture REAL output of SLURM 22.05 commands into this folder, for parser tests.
# Needs the test cluster of tests/clusters/slurm/up (running, with slurmdbd accounting).
# Takes about 2 to 3 minutes (the TIMEOUT case waits for a 1-minute limit).
#
# Every case writes:
#   CASE.txt          the command's stdout, byte for byte (may be empty)
#   CASE.stderr.txt   its stderr, only when not empty
# and a line "CASE<TAB>RC<TAB>COMMAND" in exit_codes.tsv (the exact command, job ids
# filled in). jobs.tsv maps each job of the run to its id.
#
# Usage: tests/slurm/data/capture.sh [OUTDIR]   (default: the folder of this script)
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-${HERE}}"
WORK="${CLUSTRIX_TEST_ROOT:-/tmp/clustrix-test}/slurm/capture"
mkdir -p -- "${OUT}" "${WORK}"
cd -- "${WORK}"

MANIFEST="${OUT}/exit_codes.tsv"
JOBS="${OUT}/jobs.tsv"
printf 'case\trc\tcommand\n' >"${MANIFEST}"
printf 'name\tjob_id\tsubmitted_with\n' >"${JOBS}"

note() { printf '[capture] %s\n' "$*" >&2; }

# cap CASE COMMAND -> run COMMAND (a bash command string) and record it
cap() {
    local name="$1" cmd="$2" rc=0
    bash -c "${cmd}" >"${OUT}/${name}.txt" 2>"${OUT}/${name}.stderr.txt" || rc=$?
    [[ -s "${OUT}/${name}.stderr.txt" ]] || rm -f -- "${OUT}/${name}.stderr.txt"
    printf '%s\t%s\t%s\n' "${name}" "${rc}" "${cmd}" >>"${MANIFEST}"
    note "${name}: rc ${rc}"
}

# submit NAME SBATCH-ARGS... -> sbatch --parsable, prints the id, records it
submit() {
    local name="$1" id
    shift
    id="$(sbatch --parsable -J "cx-${name}" "$@")"
    id="${id%%;*}"
    printf '%s\t%s\t%s\n' "${name}" "${id}" "sbatch --parsable -J cx-${name} $*" >>"${JOBS}"
    printf '%s\n' "${id}"
}

job_state() {
    scontrol show job -o "$1" 2>/dev/null | head -n 1 | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'
}

# wait_state ID STATE [TIMEOUT]
wait_state() {
    local id="$1" want="$2" max="${3:-60}" i st=""
    for ((i = 0; i < max * 5; i++)); do
        st="$(job_state "${id}")"
        [[ "${st}" == "${want}" ]] && return 0
        sleep 0.2
    done
    note "job ${id}: waited ${max}s for ${want}, state is '${st}'"
    return 1
}

# wait_sacct ID STATE -> until sacct -X shows STATE for the job (accounting lags a bit)
wait_sacct() {
    local id="$1" want="$2" i st=""
    for ((i = 0; i < 100; i++)); do
        st="$(sacct -n -X -P -j "${id}" -o State 2>/dev/null | head -n 1)"
        [[ "${st}" == "${want}"* ]] && return 0
        sleep 0.2
    done
    note "job ${id}: sacct shows '${st}', wanted ${want}"
    return 1
}

# wait until no task of array ID is pending or running
wait_array_done() {
    local id="$1" i
    for ((i = 0; i < 600; i++)); do
        if [[ -z "$(squeue -h -j "${id}" -t PENDING,RUNNING,CONFIGURING,COMPLETING -o %i 2>/dev/null)" ]]; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# the job views captured for every finished job
job_views() {
    local tag="$1" id="$2"
    cap "scontrol_show_job_${tag}" "scontrol show job ${id}"
    cap "scontrol_show_job_oneline_${tag}" "scontrol show job -o ${id}"
    cap "sacct_X_${tag}" "sacct --parsable2 -n -X -j ${id} -o JobID,State,ExitCode,Reason"
    cap "sacct_X_raw_${tag}" "sacct --parsable2 -n -X -j ${id} --format JobIDRaw,JobID,State,ExitCode,DerivedExitCode,Reason"
    cap "sacct_steps_${tag}" "sacct --parsable2 -n -j ${id} --format JobIDRaw,JobID,State,ExitCode,DerivedExitCode,Reason"
}

note "cluster: $(sinfo -h -o '%P %T %c' | tr '\n' ' ')"
# Other users of the shared test cluster may restart slurmctld (tests/clusters/slurm/up
# with another CLUSTRIX_SLURM_MAX_ARRAY_SIZE); a restart in the middle changes some
# outputs, so it is detected and the run fails.
ctld_pid() { scontrol ping >/dev/null 2>&1 && cat "${CLUSTRIX_TEST_ROOT:-/tmp/clustrix-test}/slurm/run/slurmctld.pid"; }
CTLD_PID="$(ctld_pid)"
cap scontrol_show_config_maxarraysize "scontrol show config | grep -i MaxArraySize"

# ---- submissions -------------------------------------------------------------------
# TIMEOUT first: partition tiny has MaxTime=00:01:00, which is also its default limit.
T_TIMEOUT="$(submit timeout -p tiny -o /dev/null --wrap 'sleep 120')"

cap sbatch_parsable "sbatch --parsable -J cx-completed -o ${WORK}/completed.out --wrap 'echo hello'"
T_COMPLETED="$(<"${OUT}/sbatch_parsable.txt")"
printf '%s\t%s\t%s\n' completed "${T_COMPLETED}" "(case sbatch_parsable)" >>"${JOBS}"
cap sbatch_plain "sbatch -J cx-plain -o /dev/null --wrap true"
cap sbatch_parsable_array "sbatch --parsable -J cx-array-mixed -o /dev/null --array=0-3 --wrap 'exit \$(( SLURM_ARRAY_TASK_ID % 2 * 3 ))'"
T_ARRAY_MIXED="$(<"${OUT}/sbatch_parsable_array.txt")"
printf '%s\t%s\t%s\n' array_mixed "${T_ARRAY_MIXED}" "(case sbatch_parsable_array)" >>"${JOBS}"

T_FAILED="$(submit failed -o /dev/null --wrap 'exit 3')"
T_SIGNAL="$(submit signal -o /dev/null --wrap 'kill -9 $$')"
T_CANCEL="$(submit cancelled -o /dev/null --wrap 'sleep 300')"
T_HELD="$(submit held --hold -o /dev/null --wrap true)"
T_BEGIN="$(submit begin --begin=now+3600 -o /dev/null --wrap true)"
T_DEP="$(submit dependency --dependency=afterok:"${T_CANCEL}" -o /dev/null --wrap true)"
T_ARRAY="$(submit array_throttled --array=0-5%2 -o /dev/null --wrap 'sleep 15')"
# 2-CPU jobs on a 2-core node with OverSubscribe=FORCE:4: 4 fit, the others pend
T_BIG=()
for i in 1 2 3 4 5 6; do
    T_BIG+=("$(submit "cpus2_${i}" -c 2 -o /dev/null --wrap 'sleep 20')")
done

wait_state "${T_CANCEL}" RUNNING
wait_state "${T_TIMEOUT}" RUNNING
sleep 3  # let the array start its first two tasks and the scheduler set reasons

ALL_IDS="${T_TIMEOUT},${T_CANCEL},${T_HELD},${T_BEGIN},${T_DEP},${T_ARRAY},$(IFS=,; echo "${T_BIG[*]}")"
cap squeue_mixed_pipe "squeue -h -t all -j ${ALL_IDS} -o '%i|%T|%r'"
cap squeue_mixed_space "squeue -h -t all -j ${ALL_IDS} -o '%i %T %r'"
cap squeue_mixed_ids "squeue -h -t all -j ${ALL_IDS} -o '%i|%A|%F|%K|%T|%r'"
cap squeue_mixed_expanded "squeue -h -t all -r -j ${ALL_IDS} -o '%i|%T|%r'"
cap squeue_mixed_default "squeue -t all -j ${ALL_IDS}"
cap squeue_mixed_long "squeue -h -t all -j ${ALL_IDS} --Format=JobID:30,ArrayJobID:12,ArrayTaskID:12,State:14,Reason:40"
cap squeue_array_only "squeue -h -t all -j ${T_ARRAY} -o '%i|%T|%r'"
cap scontrol_show_job_running "scontrol show job ${T_CANCEL}"
cap scontrol_show_job_oneline_running "scontrol show job -o ${T_CANCEL}"
cap scontrol_show_job_oneline_pending_held "scontrol show job -o ${T_HELD}"
cap scontrol_show_job_oneline_pending_begin "scontrol show job -o ${T_BEGIN}"
cap scontrol_show_job_oneline_pending_dependency "scontrol show job -o ${T_DEP}"
cap scontrol_show_job_array_running "scontrol show job ${T_ARRAY}"
cap scontrol_show_job_oneline_array_running "scontrol show job -o ${T_ARRAY}"
cap sacct_X_running "sacct --parsable2 -n -X -j ${T_CANCEL},${T_HELD},${T_BEGIN},${T_ARRAY} -o JobID,State,ExitCode,Reason"
cap sacct_X_raw_running "sacct --parsable2 -n -X -j ${T_CANCEL},${T_HELD},${T_BEGIN},${T_ARRAY} --format JobIDRaw,JobID,State,ExitCode,Reason"

# ---- cancel a running job; its dependant can now never run ---------------------------
cap scancel_running "scancel ${T_CANCEL}"
wait_state "${T_CANCEL}" CANCELLED
wait_sacct "${T_CANCEL}" CANCELLED || true
sleep 2
cap squeue_dependency_never_satisfied "squeue -h -t all -j ${T_DEP} -o '%i|%T|%r'"
cap scontrol_show_job_oneline_dependency_never_satisfied "scontrol show job -o ${T_DEP}"
job_views cancelled "${T_CANCEL}"

# ---- requests the cluster cannot satisfy ---------------------------------------------
MEM_MB="$(scontrol show node localhost | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
cap sbatch_impossible_mem "sbatch --parsable -J cx-bigmem -o /dev/null --mem=$((MEM_MB * 2))M --wrap true"
cap sbatch_impossible_nodes "sbatch --parsable -J cx-2nodes -o /dev/null --nodes=2 --wrap true"
cap sbatch_impossible_cpus "sbatch --parsable -J cx-3cpus -o /dev/null -c 3 --wrap true"
cap sbatch_impossible_time "sbatch --parsable -J cx-longtiny -o /dev/null -p tiny --time=00:05:00 --wrap true"
cap sbatch_bad_partition "sbatch --parsable -J cx-nopart -o /dev/null -p nosuchpartition --wrap true"
cap sbatch_array_too_big "sbatch --parsable -J cx-bigarray -o /dev/null --array=0-20000 --wrap true"
cap sbatch_array_max_index "sbatch --parsable -J cx-bigarray2 -o /dev/null --array=10001 --wrap true"
IMPOSSIBLE=()
IMPOSSIBLE_CASES=()
for c in sbatch_impossible_mem sbatch_impossible_nodes sbatch_impossible_cpus sbatch_impossible_time sbatch_array_max_index; do
    if [[ -s "${OUT}/${c}.txt" ]]; then
        id="$(<"${OUT}/${c}.txt")"
        id="${id%%;*}"
        IMPOSSIBLE+=("${id}")
        IMPOSSIBLE_CASES+=("${c#sbatch_}")
        printf '%s\t%s\t%s\n' "${c#sbatch_}" "${id}" "(case ${c})" >>"${JOBS}"
    fi
done
if [[ "${#IMPOSSIBLE[@]}" -gt 0 ]]; then
    sleep 3
    IMP_IDS="$(IFS=,; echo "${IMPOSSIBLE[*]}")"
    for ((i = 0; i < 50; i++)); do  # accounting records of pending jobs come a bit later
        [[ "$(sacct -n -X -P -j "${IMP_IDS}" -o JobID | wc -l)" -ge "${#IMPOSSIBLE[@]}" ]] && break
        sleep 0.2
    done
    cap squeue_impossible "squeue -h -t all -j ${IMP_IDS} -o '%i|%T|%r'"
    for i in "${!IMPOSSIBLE[@]}"; do
        cap "scontrol_show_job_oneline_${IMPOSSIBLE_CASES[i]}" "scontrol show job -o ${IMPOSSIBLE[i]}"
    done
    cap sacct_X_impossible "sacct --parsable2 -n -X -j ${IMP_IDS} -o JobID,State,ExitCode,Reason"
fi

# ---- unknown ids ------------------------------------------------------------------------
cap scontrol_show_job_unknown "scontrol show job 999999"
cap scontrol_show_job_oneline_unknown "scontrol show job -o 999999"
cap squeue_unknown "squeue -h -t all -j 999999 -o '%i|%T|%r'"
cap squeue_known_and_unknown "squeue -h -t all -j ${T_HELD},999999 -o '%i|%T|%r'"
cap sacct_unknown "sacct --parsable2 -n -X -j 999999 -o JobID,State,ExitCode,Reason"
cap scancel_unknown "scancel 999999"

# ---- finished jobs ------------------------------------------------------------------------
wait_state "${T_COMPLETED}" COMPLETED
wait_state "${T_FAILED}" FAILED
wait_state "${T_SIGNAL}" FAILED || true
wait_array_done "${T_ARRAY_MIXED}"
wait_sacct "${T_COMPLETED}" COMPLETED || true
wait_sacct "${T_FAILED}" FAILED || true
wait_sacct "${T_SIGNAL}" FAILED || true
sleep 1
job_views completed "${T_COMPLETED}"
job_views failed "${T_FAILED}"
job_views signal "${T_SIGNAL}"
job_views array_mixed "${T_ARRAY_MIXED}"
cap squeue_array_mixed_finished "squeue -h -t all -j ${T_ARRAY_MIXED} -o '%i|%A|%F|%K|%T|%r'"

wait_array_done "${T_ARRAY}"
sleep 1
job_views array_throttled "${T_ARRAY}"

note "waiting for job ${T_TIMEOUT} to time out (1-minute limit)"
wait_state "${T_TIMEOUT}" TIMEOUT 240
wait_sacct "${T_TIMEOUT}" TIMEOUT || true
sleep 1
job_views timeout "${T_TIMEOUT}"

FIN_IDS="${T_COMPLETED},${T_FAILED},${T_SIGNAL},${T_CANCEL},${T_TIMEOUT},${T_ARRAY_MIXED}"
cap squeue_finished "squeue -h -t all -j ${FIN_IDS} -o '%i|%T|%r'"
cap squeue_finished_default_states "squeue -h -j ${FIN_IDS} -o '%i|%T|%r'"
cap sacct_X_many "sacct --parsable2 -n -X -j ${FIN_IDS} -o JobID,State,ExitCode,Reason"
cap sacct_X_raw_many "sacct --parsable2 -n -X -j ${FIN_IDS} --format JobIDRaw,JobID,State,ExitCode,Reason"

# ---- clean up what is still pending -------------------------------------------------------
scancel "${T_HELD}" "${T_BEGIN}" "${T_DEP}" "${T_BIG[@]}" "${IMPOSSIBLE[@]}" 2>/dev/null || true
if [[ "$(ctld_pid)" != "${CTLD_PID}" ]]; then
    note "slurmctld was restarted during the capture (pid ${CTLD_PID} -> $(ctld_pid)): outputs are not consistent, run again"
    exit 2
fi
note "done: ${OUT}"
