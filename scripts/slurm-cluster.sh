#!/usr/bin/env bash
# The project's SLURM test cluster: one node (this machine, named after `hostname -s`), one partition `debug`,
# daemons started by hand (no systemd). Facts behind every setting: /work/shared/notes/slurm.md.
#
#   scripts/slurm-cluster.sh start    install slurm-wlm + munge if missing (apt), write /etc/slurm/slurm.conf,
#                                     start munged, slurmctld, slurmd, wait until the node is idle
#   scripts/slurm-cluster.sh stop     cancel every job, stop the daemons this script started (by pid file)
#   scripts/slurm-cluster.sh status   print the daemons and the node state; rc 0 when the cluster answers
#
# Both start and stop are idempotent. Exit status: 0 done; 1 failed; 2 usage; 3 SLURM cannot run on this machine
# (not root, no apt/network, a foreign slurm.conf): the last stderr line says why, and the tests skip with it.
# Environment: XL_SLURM_DIR (state, spool, logs, pid files; default /var/lib/xl-slurm), XL_SLURM_CPUS (CPUs
# the node declares; default 4 per real CPU), XL_SLURM_START_TIMEOUT (seconds until idle; default 60).
set -euo pipefail

BASE=${XL_SLURM_DIR:-/var/lib/xl-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# xl-slurm: written by scripts/slurm-cluster.sh (edit the script, not this file)"
PARTITION=debug
NODE=$(hostname -s)
START_TIMEOUT=${XL_SLURM_START_TIMEOUT:-60}
MUNGE_PIDFILE=/run/munge/munged.pid # munged's own; $BASE/run/munged.pid records that this script started it
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

say() { echo "slurm-cluster: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}
cannot() {
    echo "slurm-cluster: cannot run SLURM here: $*" >&2
    exit 3
}

# Whether process $1 is alive, not a zombie (PID 1 here reaps slowly), and named $2 (a stale pid file after a
# reboot may name an unrelated process).
is_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 1
    stat=${stat##*) } # the field after "pid (comm) " is the state
    [ "${stat%% *}" != Z ]
}

# The pid in pid file $1 if that process is alive and named $2; nothing (rc 1) otherwise.
live_pid() {
    local pid
    pid=$(tr -dc '0-9' 2>/dev/null <"$1") || return 1
    [ -n "$pid" ] && is_alive "$pid" "$2" || return 1
    echo "$pid"
}

munged_pid() { live_pid "$MUNGE_PIDFILE" munged; }
slurmctld_pid() { live_pid "$BASE/run/slurmctld.pid" slurmctld; }
slurmd_pid() { live_pid "$BASE/run/slurmd.pid" slurmd; }
all_running() { munged_pid >/dev/null && slurmctld_pid >/dev/null && slurmd_pid >/dev/null; }

# The node's long state (idle, mixed, allocated, drained, ...); empty if the controller does not answer.
node_state() { timeout 5 sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n1 || true; }

log_tails() {
    local f
    for f in "$BASE/log/slurmctld.log" "$BASE/log/slurmd.log" /var/log/munge/munged.log; do
        [ -r "$f" ] && { echo "---- last lines of $f"; tail -n 15 "$f"; }
    done >&2
    return 0
}

# Hardware as slurmd detects it; the node declares XL_SLURM_CPUS (default 4 per real CPU) so that more one-CPU
# jobs and steps run at once than there are cores (slurm.md: "Declare more CPUs than exist", needs
# SlurmdParameters=config_overrides). Memory is the detected RealMemory (it is not a consumable with CR_Core).
write_conf() {
    local hw real_cpus mem cpus
    hw=$(slurmd -C 2>/dev/null | head -n1) || die "slurmd -C failed"
    real_cpus=$(sed -n 's/.*\bCPUs=\([0-9]*\).*/\1/p' <<<"$hw")
    mem=$(sed -n 's/.*\bRealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    [ -n "$real_cpus" ] && [ -n "$mem" ] || die "cannot parse 'slurmd -C': $hw"
    cpus=${XL_SLURM_CPUS:-$((4 * real_cpus))}
    cat <<EOF
$MARK
# Real hardware ($hw): the node declares $cpus CPUs (XL_SLURM_CPUS) on $real_cpus real ones.
ClusterName=xltest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
MailProg=/bin/true
# MPICH (the venv's mpich wheel) ranks under plain srun; Open MPI needs srun --mpi=pmix
MpiDefault=pmi2
# no usable cgroup v1 freezer here: proctrack/cgroup drains the node
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
# the default 3 s batch delay starts one batch job per 3 s
SchedulerParameters=batch_sched_delay=0
# a job whose dependency failed is cancelled instead of pending forever (not a SchedulerParameters in 22.05)
DependencyParameters=kill_invalid_depend
# oversized requests fail at submission instead of pending forever
EnforcePartLimits=ALL
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# no slurmdbd: final job states come from squeue -t all / scontrol show job (MinJobAge s) or sacct -c (this file).
# MinJobAge=3600: a test session is longer than slurm's default 300 s, and tests that start a job at collection
# (the time-limit ones) read its final record with scontrol at the end.
JobCompType=jobcomp/filetxt
JobCompLoc=$BASE/log/jobcomp.log
InactiveLimit=0
KillWait=5
MinJobAge=3600
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

# SIGTERM to the daemon named $2 whose pid file is $1, then wait for it to exit (SIGKILL after 30 s).
stop_daemon() {
    local pid i
    pid=$(live_pid "$1" "$2") || return 0
    say "stopping $2 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        is_alive "$pid" "$2" || return 0
        sleep 0.1
    done
    say "$2 (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

cmd_status() {
    local state
    echo "munged:    $(munged_pid || echo 'not running')"
    echo "slurmctld: $(slurmctld_pid || echo 'not running')"
    echo "slurmd:    $(slurmd_pid || echo 'not running')"
    if slurmctld_pid >/dev/null; then
        state=$(node_state)
        echo "node $NODE: ${state:-no answer}, partition $PARTITION, config $CONF, logs $BASE/log"
    fi
    all_running && [ -n "${state:-}" ]
}

cmd_start() {
    local t0 deadline new state resumed=0
    t0=$(date +%s%N)
    if all_running && [ -r "$CONF" ] && grep -qxF "$MARK" "$CONF" && [ "$(write_conf)" = "$(cat "$CONF")" ]; then
        state=$(node_state)
        case $state in
            idle | mixed | allocated | completing)
                say "already running (node $NODE $state)"
                return 0
                ;;
        esac
    fi
    [ "$(uname -s)" = Linux ] || cannot "not Linux"
    [ "$(id -u)" = 0 ] || cannot "not root (installing and running slurmctld/slurmd needs root)"
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sinfo >/dev/null ||
        ! command -v munged >/dev/null; then
        command -v apt-get >/dev/null || cannot "slurm-wlm/munge are not installed and there is no apt-get"
        say "installing slurm-wlm and munge (apt)"
        local out
        if ! out=$(export DEBIAN_FRONTEND=noninteractive
            timeout 300 apt-get update -qq 2>&1 &&
                timeout 600 apt-get install -y -qq --no-install-recommends slurm-wlm munge 2>&1); then
            echo "$out" | tail -n 5 >&2
            cannot "apt-get install slurm-wlm munge failed (no network or no Debian mirror?)"
        fi
    fi
    if [ -e "$CONF" ] && ! grep -qxF "$MARK" "$CONF"; then
        cannot "$CONF exists and was not written by scripts/slurm-cluster.sh; not overwriting it"
    fi

    mkdir -p "$BASE/state" "$BASE/spool" "$BASE/log" "$BASE/run" /etc/slurm
    # munge: the key (the package's postinst normally writes it), then the daemon
    if [ ! -s /etc/munge/munge.key ]; then
        say "creating /etc/munge/munge.key"
        mkdir -p /etc/munge
        (umask 077 && dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none)
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    if ! munged_pid >/dev/null; then
        mkdir -p /run/munge /var/log/munge /var/lib/munge
        chown munge:munge /run/munge /var/log/munge /var/lib/munge
        rm -f "$BASE/run/munged.pid"
        runuser -u munge -- /usr/sbin/munged || {
            log_tails
            die "munged did not start"
        }
        munged_pid >"$BASE/run/munged.pid" || die "munged started but $MUNGE_PIDFILE names no live munged"
    fi
    timeout 10 munge -n </dev/null | timeout 10 unmunge >/dev/null || die "munge -n | unmunge failed"

    # slurm.conf: rewritten when the wanted one differs. Running slurm daemons then restart from empty state:
    # slurmctld aborts running jobs when the node's core layout changes, and requeues them with a delay.
    new=$(write_conf)
    if [ ! -e "$CONF" ] || [ "$new" != "$(cat "$CONF")" ]; then
        if slurmctld_pid >/dev/null || slurmd_pid >/dev/null; then
            say "slurm.conf changed: restarting slurmctld and slurmd (jobs are cancelled)"
            stop_slurm
        fi
        printf '%s\n' "$new" >"$CONF.tmp"
        chmod 0644 "$CONF.tmp"
        mv -f "$CONF.tmp" "$CONF"
    fi
    # A cold start begins from empty state: job ids from 1, no saved drain, fresh logs.
    if ! slurmctld_pid >/dev/null && ! slurmd_pid >/dev/null; then
        rm -rf "${BASE:?}/state" "${BASE:?}/spool"
        mkdir -p "$BASE/state" "$BASE/spool"
        : >"$BASE/log/slurmctld.log"
        : >"$BASE/log/slurmd.log"
        : >"$BASE/log/jobcomp.log"
    fi
    slurmctld_pid >/dev/null || /usr/sbin/slurmctld || {
        log_tails
        die "slurmctld did not start"
    }
    slurmd_pid >/dev/null || /usr/sbin/slurmd -N "$NODE" || {
        log_tails
        die "slurmd did not start"
    }

    # Wait (bounded) until the controller reports the node usable.
    deadline=$(($(date +%s) + START_TIMEOUT))
    while :; do
        state=$(node_state)
        case $state in
            idle | mixed | allocated | completing) break ;;
            drain* | down* | inval* | fail*)
                # a drain survives in saved state; resume once
                if [ "$resumed" = 0 ]; then
                    resumed=1
                    say "node $NODE is $state; resuming it"
                    timeout 10 scontrol update nodename="$NODE" state=resume >&2 || true
                fi
                ;;
        esac
        # a daemon that died after daemonizing (bad config, port taken): fail now, not at the deadline
        if [ "$(($(date +%s) + START_TIMEOUT - deadline))" -ge 5 ] && ! { slurmctld_pid && slurmd_pid; } >/dev/null; then
            log_tails
            die "slurmctld or slurmd exited during start-up (see the logs above)"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            timeout 5 scontrol show node "$NODE" >&2 || true
            log_tails
            die "node $NODE not idle after ${START_TIMEOUT}s (last state: '${state:-no answer}')"
        fi
        sleep 0.1
    done
    t0=$((($(date +%s%N) - t0) / 1000000))
    say "running: node $NODE ($state), partition $PARTITION, $CONF, logs in $BASE/log;" \
        "ready after $((t0 / 1000)).$(printf %03d $((t0 % 1000))) s"
}

# Cancel every job, then stop slurmd and slurmctld. Jobs first: stopping slurmd leaves running jobs' slurmstepd
# and their processes behind (slurm.md).
stop_slurm() {
    local ids i
    if slurmctld_pid >/dev/null; then
        ids=$(timeout 15 squeue -h -o %i 2>/dev/null || true)
        if [ -n "$ids" ]; then
            say "cancelling jobs: $(echo $ids)"
            # shellcheck disable=SC2086
            timeout 15 scancel $ids || true
            for ((i = 0; i < 300; i++)); do
                [ -z "$(timeout 15 squeue -h -o %i 2>/dev/null || true)" ] && break
                sleep 0.1
            done
        fi
    fi
    stop_daemon "$BASE/run/slurmd.pid" slurmd
    stop_daemon "$BASE/run/slurmctld.pid" slurmctld
}

cmd_stop() {
    local ours
    if ! slurmctld_pid >/dev/null && ! slurmd_pid >/dev/null && ! live_pid "$BASE/run/munged.pid" munged >/dev/null; then
        say "not running"
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "not root: cannot stop root's daemons"
    stop_slurm
    # munged only if this script started it (its pid recorded at start)
    if ours=$(live_pid "$BASE/run/munged.pid" munged) && [ "$ours" = "$(munged_pid || true)" ]; then
        stop_daemon "$MUNGE_PIDFILE" munged
    fi
    rm -f "$BASE/run/munged.pid"
    say "stopped"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
