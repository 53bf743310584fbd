#!/usr/bin/env bash
# A one-machine Slurm cluster from Debian's slurm-wlm and munge: munged, slurmctld and one slurmd
# on this host, a partition "debug" with this node. For tests and for trying the Slurm example in
# docs/distributed.md without a cluster. Needs root.
#   scripts/slurm_cluster.sh start [CPUS]   writes /etc/slurm/slurm.conf, starts the daemons, waits
#                                            (at most 60 s) until the node takes jobs
#   scripts/slurm_cluster.sh stop            stops them
# CPUS (default 8) is what the node offers; more than the machine has lets a small job's shards
# and replicas (one CPU each) run as separate steps on a 2-core machine.
set -euo pipefail
action=${1:-start}
cpus=${2:-8}
host=$(hostname -s)
state=/var/spool/distbelief-slurm

stop() {
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
  local d
  for _ in $(seq 50); do
    pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || pgrep -x munged >/dev/null || return 0
    sleep 0.1
  done
  for d in slurmd slurmctld munged; do pkill -9 -x "$d" 2>/dev/null || true; done
}

if [ "$action" = stop ]; then
  stop
  exit 0
fi
[ "$action" = start ] || { echo "usage: $0 start [CPUS] | stop" >&2; exit 2; }
command -v slurmctld >/dev/null && command -v munged >/dev/null ||
  { echo "slurm-wlm and munge are not installed (scripts/setup.sh --slurm installs them)" >&2; exit 1; }
if [ -f /etc/slurm/slurm.conf ] && ! head -1 /etc/slurm/slurm.conf | grep -q "distbelief scripts/slurm_cluster.sh"; then
  echo "slurm: /etc/slurm/slurm.conf exists and was not written by this script; not touching it" >&2
  exit 1
fi
stop

# munge: a key only munge can read, its run and log directories.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
runuser -u munge -- /usr/sbin/munged
for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done
munge -n | unmunge >/dev/null || { echo "munge does not work" >&2; exit 1; }

mkdir -p /etc/slurm "$state/ctld" "$state/d" /var/log/slurm
cat >/etc/slurm/slurm.conf <<CONF
# Written by distbelief scripts/slurm_cluster.sh: a one-machine cluster.
ClusterName=distbelief
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdParameters=config_overrides
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
KillWait=5
NodeName=$host CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
/usr/sbin/slurmctld -i
/usr/sbin/slurmd
for _ in $(seq 600); do
  if sinfo -h -n "$host" -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "slurm: node $host up ($cpus CPUs), partition debug"
    exit 0
  fi
  sleep 0.1
done
echo "slurm: the node did not come up within 60 s" >&2
tail -5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2
exit 1
