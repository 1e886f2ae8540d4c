#!/usr/bin/env bash
# Re-capture the real Son of Grid Engine outputs in this directory (see
# README.md). Needs the cluster of tests/clusters/sge/up, running and with no
# other jobs (it waits for an empty cluster; other jobs would show up in the
# qstat outputs and take the slots this relies on: all.q with 8 slots, pe smp).
#
# Every case NAME gives NAME.txt (stdout, may be empty), NAME.stderr
# (only when not empty) and one line "NAME<TAB>rc<TAB>command" in manifest.tsv.
set -euo pipefail

OUT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${CLUSTRIX_TEST_ROOT:-/tmp/clustrix-test}/sge/fixtures"
MANIFEST="${OUT}/manifest.tsv"
UNKNOWN=999999

log() { printf '[capture] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

rm -rf "${WORK}"
mkdir -p "${WORK}"
cd "${WORK}"

# ------------------------------------------------------------------ helpers

printf 'name\trc\tcommand\n' >"${MANIFEST}"

# cap NAME COMMAND...: run it, keep stdout/stderr/rc.
cap() {
  local name="$1" rc=0
  shift
  rm -f "${OUT}/${name}.txt" "${OUT}/${name}.stderr"
  "$@" >"${OUT}/${name}.txt" 2>"${OUT}/${name}.stderr" || rc=$?
  [[ -s "${OUT}/${name}.stderr" ]] || rm -f "${OUT}/${name}.stderr"
  printf '%s\t%s\t%s\n' "${name}" "${rc}" "$(printf '%q ' "$@" | sed 's/ $//')" >>"${MANIFEST}"
  log "${name}: rc ${rc}"
}

# The id in the last capture's stdout ("17", "18.1-4:1", "Your job 19 (...)").
id_of() {
  grep -oE '[0-9]+' "${OUT}/$1.txt" | head -n 1
}

# gone ID: the job left qstat.
gone() { ! qstat -j "$1" >/dev/null 2>&1; }

wait_until() { # wait_until SECONDS DESCRIPTION COMMAND...
  local secs="$1" what="$2" i
  shift 2
  for ((i = 0; i < secs * 4; i++)); do
    if "$@"; then return 0; fi
    sleep 0.25
  done
  die "timed out after ${secs}s waiting for ${what}"
}

# state_is ID STATE [TASK]: qstat -xml lists the job (task) in STATE.
state_is() {
  local id="$1" want="$2" task="${3:-}"
  qstat -xml -u '*' | python3 -c '
import sys, xml.etree.ElementTree as ET
jid, want, task = sys.argv[1:4]
for j in ET.parse(sys.stdin).iter("job_list"):
    if j.findtext("JB_job_number") != jid:
        continue
    tasks = j.findtext("tasks") or ""
    if task and task != tasks:
        continue
    if j.findtext("state") == want:
        sys.exit(0)
sys.exit(1)' "${id}" "${want}" "${task}"
}

array_running() { # array_running ID N: exactly N tasks of ID are in state r
  qstat -xml -u '*' | python3 -c '
import sys, xml.etree.ElementTree as ET
jid, n = sys.argv[1], int(sys.argv[2])
got = sum(1 for j in ET.parse(sys.stdin).iter("job_list")
          if j.findtext("JB_job_number") == jid and j.findtext("state") == "r")
sys.exit(0 if got == n else 1)' "$1" "$2"
}

# no_foreign_job: every job in qstat is one of ours (named fx-*).
no_foreign_job() {
  qstat -xml -u '*' | python3 -c '
import sys, xml.etree.ElementTree as ET
names = [j.findtext("JB_name") or "" for j in ET.parse(sys.stdin).iter("job_list")]
sys.exit(0 if all(n.startswith("fx-") for n in names) else 1)'
}

# foreign_in_files NAME...: a captured qstat output (XML or text) shows a job
# that is not ours.
foreign_in_files() {
  local name
  for name in "$@"; do
    python3 - "${OUT}/${name}.txt" <<'PY' || return 0
import re, sys
text = open(sys.argv[1]).read()
if text.lstrip().startswith("<?xml"):
    names = re.findall(r"<JB_name>(.*?)</JB_name>", text)
else:
    names = [l.split()[2] for l in text.splitlines() if re.match(r"\s*[0-9]+ ", l)]
sys.exit(0 if all(n.startswith("fx-") for n in names) else 1)
PY
  done
  return 1
}

cluster_empty() { [[ -z "$(qstat -u '*')" ]]; }

# --------------------------------------------------------------- job files

cat >ok.sh <<'EOF'
#!/bin/bash
echo "hello from job ${JOB_ID} task ${SGE_TASK_ID}"
EOF
cat >exit3.sh <<'EOF'
#!/bin/bash
echo "about to fail"
exit 3
EOF
cat >sleep.sh <<'EOF'
#!/bin/bash
sleep "${1:-600}"
EOF
cat >array.sh <<'EOF'
#!/bin/bash
echo "task ${SGE_TASK_ID} of ${SGE_TASK_FIRST}-${SGE_TASK_LAST}:${SGE_TASK_STEPSIZE}"
sleep 1
EOF
chmod +x ./*.sh

# ------------------------------------------------------------------ empty

log "waiting for an empty cluster"
wait_until 600 "an empty cluster (qstat -u '*' lists jobs)" cluster_empty
cap qstat_xml_empty qstat -xml
cap qstat_empty qstat

# ----------------------------------------------------- finished-job cases

cap qsub_terse qsub -terse -N fx-ok -j y -o "${WORK}" ok.sh
ID_OK="$(id_of qsub_terse)"
cap qsub_terse_array qsub -terse -N fx-array-done -t 1-4 -j y -o "${WORK}" array.sh
ID_ARRAY_DONE="$(id_of qsub_terse_array)"
cap qsub_plain qsub -N fx-exit3 -j y -o "${WORK}" exit3.sh
ID_EXIT3="$(id_of qsub_plain)"
cap qsub_plain_array qsub -N fx-array-plain -t 1-2 -j y -o "${WORK}" array.sh
ID_ARRAY_PLAIN="$(id_of qsub_plain_array)"
cap qsub_terse_h_rt qsub -terse -N fx-h_rt -l h_rt=0:0:3 -j y -o "${WORK}" sleep.sh 30
ID_H_RT="$(id_of qsub_terse_h_rt)"
cap qsub_sync_exit3 qsub -sync y -N fx-sync-exit3 -j y -o "${WORK}" exit3.sh
ID_SYNC_EXIT3="$(id_of qsub_sync_exit3)"

for id in "${ID_OK}" "${ID_ARRAY_DONE}" "${ID_EXIT3}" "${ID_ARRAY_PLAIN}" "${ID_H_RT}"; do
  wait_until 120 "job ${id} to finish" gone "${id}"
done

# ------------------------------------------------------- queued-job cases

# Error state first, while slots are free: the execd cannot open the output
# file (or the working directory) and the job goes to Eqw.
cap qsub_terse_eqw_output qsub -terse -N fx-eqw-output -o /nonexistent/dir/out -j y sleep.sh 5
ID_EQW="$(id_of qsub_terse_eqw_output)"
cap qsub_terse_eqw_wd qsub -terse -N fx-eqw-wd -wd /nonexistent/wd -j y -o /tmp sleep.sh 5
ID_EQW_WD="$(id_of qsub_terse_eqw_wd || true)"
wait_until 60 "job ${ID_EQW} in Eqw" state_is "${ID_EQW}" Eqw
if [[ -n "${ID_EQW_WD}" ]]; then
  wait_until 60 "job ${ID_EQW_WD} in Eqw" state_is "${ID_EQW_WD}" Eqw
fi

# Running, partly running array, pending, held. Other engineers' tests may
# use the same cluster, so this leaves slots free: a 2-slot smp job, an array
# throttled to 2 concurrent tasks (-tc 2: tasks 3 and 4 stay qw) and a job
# that asks for more smp slots (16) than the 8-slot queue has (stays qw).
cap qsub_terse_running qsub -terse -N fx-running -pe smp 2 -j y -o "${WORK}" sleep.sh 600
ID_RUN="$(id_of qsub_terse_running)"
wait_until 60 "job ${ID_RUN} running" state_is "${ID_RUN}" r
cap qsub_terse_array_running qsub -terse -N fx-array -t 1-4 -tc 2 -j y -o "${WORK}" sleep.sh 600
ID_ARRAY="$(id_of qsub_terse_array_running)"
wait_until 60 "2 tasks of ${ID_ARRAY} running" array_running "${ID_ARRAY}" 2
cap qsub_terse_pending qsub -terse -N fx-pending -pe smp 16 -j y -o "${WORK}" sleep.sh 600
ID_PEND="$(id_of qsub_terse_pending)"
cap qsub_terse_held qsub -terse -h -N fx-held -j y -o "${WORK}" sleep.sh 600
ID_HELD="$(id_of qsub_terse_held)"
# Let the scheduler see the new jobs (they must stay qw / hqw).
sleep 3

snapshot() {
  state_is "${ID_PEND}" qw || die "job ${ID_PEND} is not qw"
  state_is "${ID_HELD}" hqw || die "job ${ID_HELD} is not hqw"
  array_running "${ID_ARRAY}" 2 || die "array ${ID_ARRAY} has not exactly 2 running tasks"
  cap qstat_xml qstat -xml
  cap qstat_xml_u_all qstat -xml -u '*'
  cap qstat_f_xml_u_all qstat -f -xml -u '*'
  cap qstat_u_all qstat -u '*'
  cap qstat_f_u_all qstat -f -u '*'
}
# Retake the snapshot until no other job shows in it.
for ((attempt = 1; ; attempt++)); do
  wait_until 300 "no foreign job in qstat" no_foreign_job
  snapshot
  if no_foreign_job && ! foreign_in_files qstat_xml qstat_xml_u_all \
    qstat_f_xml_u_all qstat_u_all qstat_f_u_all; then
    break
  fi
  [[ "${attempt}" -lt 30 ]] || die "other jobs keep showing up in qstat"
  log "other jobs in the snapshot; retaking it"
  # drop this attempt's manifest lines
  head -n -5 "${MANIFEST}" >"${MANIFEST}.new" && mv "${MANIFEST}.new" "${MANIFEST}"
  sleep 2
done

cap qstat_j_eqw qstat -j "${ID_EQW}"
if [[ -n "${ID_EQW_WD}" ]]; then
  cap qstat_j_eqw_wd qstat -j "${ID_EQW_WD}"
fi
cap qstat_xml_j_eqw qstat -xml -j "${ID_EQW}"
cap qstat_j_running qstat -j "${ID_RUN}"
cap qstat_j_array qstat -j "${ID_ARRAY}"
cap qstat_j_pending qstat -j "${ID_PEND}"
cap qstat_j_held qstat -j "${ID_HELD}"
cap qstat_j_finished qstat -j "${ID_OK}"
cap qstat_j_unknown qstat -j "${UNKNOWN}"
cap qstat_xml_j_unknown qstat -xml -j "${UNKNOWN}"

# ------------------------------------------------------------- deletions

cap qdel_running qdel "${ID_RUN}"
cap qdel_array qdel "${ID_ARRAY}"
cap qdel_several qdel "${ID_PEND}" "${ID_HELD}" "${ID_EQW}"
if [[ -n "${ID_EQW_WD}" ]]; then
  qdel "${ID_EQW_WD}" >/dev/null
fi
cap qdel_unknown qdel "${UNKNOWN}"
for id in "${ID_RUN}" "${ID_ARRAY}" "${ID_PEND}" "${ID_HELD}" "${ID_EQW}" ${ID_EQW_WD:+"${ID_EQW_WD}"}; do
  wait_until 60 "job ${id} to leave qstat" gone "${id}"
done
sleep 1

# ---------------------------------------------------------------- qacct

cap qacct_j_ok qacct -j "${ID_OK}"
cap qacct_j_exit3 qacct -j "${ID_EXIT3}"
cap qacct_j_qdel_running qacct -j "${ID_RUN}"
cap qacct_j_h_rt qacct -j "${ID_H_RT}"
cap qacct_j_array qacct -j "${ID_ARRAY_DONE}"
cap qacct_j_array_qdel qacct -j "${ID_ARRAY}"
cap qacct_j_eqw qacct -j "${ID_EQW}"
cap qacct_j_never_ran qacct -j "${ID_PEND}"
cap qacct_j_unknown qacct -j "${UNKNOWN}"

cluster_empty || log "WARNING: the cluster is not empty after the capture"
{
  echo "ID_OK=${ID_OK} ID_ARRAY_DONE=${ID_ARRAY_DONE} ID_EXIT3=${ID_EXIT3} ID_ARRAY_PLAIN=${ID_ARRAY_PLAIN}"
  echo "ID_H_RT=${ID_H_RT} ID_SYNC_EXIT3=${ID_SYNC_EXIT3} ID_EQW=${ID_EQW} ID_EQW_WD=${ID_EQW_WD}"
  echo "ID_RUN=${ID_RUN} ID_ARRAY=${ID_ARRAY} ID_PEND=${ID_PEND} ID_HELD=${ID_HELD}"
} >&2
log "done"
