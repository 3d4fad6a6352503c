#!/usr/bin/env bash
# setup-slurm.sh - idempotent single-node Slurm cluster on loopback for CI tests.
#
# Debian 12 (bookworm) packages: slurm-wlm 22.05.8, munge 0.5.15, (optional)
# slurmdbd + mariadb-server 10.11 for sacct.  Must run as root.
#
# Everything (config, state, logs, pid files, munge key, MariaDB datadir) lives
# under $SLURM_CI_BASE (default ./.slurm-ci).  Only two things are put
# outside it:
#   /etc/slurm/slurm.conf   -> symlink to $BASE/etc/slurm.conf.  Needed because
#       snakemake-executor-plugin-slurm-jobstep strips SLURM_CONF from the env of
#       the srun it runs inside each job, so clients must find the default path.
#   /run/munge/munge.socket.2  (default munge socket; slurmctld->slurmdbd
#       connections in 22.05 ignore AuthInfo=socket=..., so use the default path)
#
# Environment knobs:
#   SLURM_CI_BASE=./.slurm-ci   WITH_ACCOUNTING=1 (0: no slurmdbd/MariaDB)
#   SLURM_CI_NODE=$(hostname -s)    SLURM_CI_DB_PORT=3307
#   SLURM_CI_WAIT=60 (seconds to wait for each daemon / the node)
# kdtools: accounting is on, as on real clusters (the plugin checks the account with sacctmgr and
# polls job states with sacct).
#
# Daemons started by this script are recorded in $BASE/run/owned/<name>; only
# those are stopped by teardown-slurm.sh.  A munged that already answers on the
# default socket is reused (and never stopped by teardown).
set -euo pipefail

BASE=${SLURM_CI_BASE:-$PWD/.slurm-ci}
WITH_ACCOUNTING=${WITH_ACCOUNTING:-1}
NODE=${SLURM_CI_NODE:-$(hostname -s)}
CLUSTER=${SLURM_CI_CLUSTER:-ci}
DB_PORT=${SLURM_CI_DB_PORT:-3307}
WAIT=${SLURM_CI_WAIT:-60}
CONF=$BASE/etc/slurm.conf
OWN=$BASE/run/owned
MUNGE_SOCK=/run/munge/munge.socket.2
T0=$(date +%s)

log() { echo "[setup-slurm +$(( $(date +%s) - T0 ))s] $*" >&2; }
die() { log "ERROR: $*"; for f in "$BASE"/log/*.log; do [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }; done; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root"

# alive PIDFILE PATTERN -> true if pidfile's pid is running and its cmdline matches PATTERN
alive() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(tr -dc '0-9' < "$1")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$2"
}
# own NAME PIDFILE PATTERN -> remember that we started this daemon
own() { printf '%s\n%s\n' "$2" "$3" > "$OWN/$1"; log "started $1 (pid $(cat "$2"))"; }
# wait_for DESCRIPTION COMMAND... -> poll until COMMAND succeeds or $WAIT seconds pass
wait_for() {
  local what=$1; shift
  for _ in $(seq 1 $((WAIT * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  die "timed out after ${WAIT}s waiting for $what"
}
wait_pidfile() { wait_for "$1 pid file" alive "$2" "$3"; }
tcp_open() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# ---------------------------------------------------------------- packages
mkdir -p "$BASE"
pkgs=(munge slurmctld slurmd slurm-client)
[ "$WITH_ACCOUNTING" = 1 ] && pkgs+=(slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  # keep apt's maintainer scripts from starting the distro services (systemd/sysv)
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; added_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" > "$BASE/apt.log" 2>&1 \
    || { tail -n 30 "$BASE/apt.log" >&2; [ $added_policy = 1 ] && rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
  rm -f "$BASE/apt.log"
  [ $added_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "packages installed"
else
  log "packages already installed"
fi

mkdir -p "$BASE"/{etc,state,spool,run,log,munge} "$OWN"
chmod 700 "$BASE/munge"

# ---------------------------------------------------------------- munge
if munge -n -S "$MUNGE_SOCK" 2>/dev/null | unmunge -S "$MUNGE_SOCK" >/dev/null 2>&1; then
  if [ -f "$OWN/munged" ]; then log "munged (started by us earlier) is running"
  else log "a foreign munged already answers on $MUNGE_SOCK - reusing it (teardown will not stop it)"; fi
else
  [ -s "$BASE/munge/munge.key" ] || mungekey -c -k "$BASE/munge/munge.key" >/dev/null
  chmod 600 "$BASE/munge/munge.key"
  mkdir -p /run/munge && chmod 755 /run/munge
  # --force: we run as root with the key in a folder munged does not own
  munged --force -S "$MUNGE_SOCK" --key-file="$BASE/munge/munge.key" \
         --pid-file="$BASE/run/munged.pid" --seed-file="$BASE/munge/munged.seed" \
         --log-file="$BASE/log/munged.log" || die "munged failed to start"
  wait_pidfile munged "$BASE/run/munged.pid" munged
  own munged "$BASE/run/munged.pid" munged
  wait_for "munge round trip" bash -c "munge -n -S $MUNGE_SOCK | unmunge -S $MUNGE_SOCK"
fi

# ---------------------------------------------------------------- accounting (MariaDB + slurmdbd)
if [ "$WITH_ACCOUNTING" = 1 ]; then
  DB=$BASE/mysql
  mkdir -p "$DB"
  [ -s "$BASE/etc/dbpass" ] || { head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$BASE/etc/dbpass"; chmod 600 "$BASE/etc/dbpass"; }
  DBPASS=$(cat "$BASE/etc/dbpass")
  if ! alive "$DB/mysqld.pid" mariadbd; then
    if [ ! -d "$DB/data/mysql" ]; then
      log "initialising MariaDB datadir"
      mariadb-install-db --no-defaults --datadir="$DB/data" --user=root \
        --auth-root-authentication-method=socket --skip-test-db > "$BASE/log/mariadb-install.log" 2>&1 \
        || die "mariadb-install-db failed (see $BASE/log/mariadb-install.log)"
    fi
    setsid nohup mariadbd --no-defaults --datadir="$DB/data" --socket="$DB/mysqld.sock" \
      --pid-file="$DB/mysqld.pid" --port="$DB_PORT" --bind-address=127.0.0.1 --user=root \
      --log-error="$BASE/log/mariadb.log" --innodb-buffer-pool-size=256M \
      --innodb-lock-wait-timeout=900 --innodb-log-file-size=64M \
      < /dev/null >> "$BASE/log/mariadb.out" 2>&1 &
    wait_pidfile mariadbd "$DB/mysqld.pid" mariadbd
    own mariadbd "$DB/mysqld.pid" mariadbd
  fi
  wait_for "MariaDB ping" mariadb-admin --no-defaults --socket="$DB/mysqld.sock" ping
  mariadb --no-defaults --socket="$DB/mysqld.sock" -uroot <<SQL || die "MariaDB user/db setup failed"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DBPASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DBPASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
  # slurmdbd reads slurmdbd.conf from dirname($SLURM_CONF); must be 0600 and owned by SlurmUser
  umask 077
  cat > "$BASE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$BASE/log/slurmdbd.log
PidFile=$BASE/run/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF
  umask 022
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
  ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

# ---------------------------------------------------------------- slurm.conf
hw=$(slurmd -C | head -n 1)
val() { grep -o "$1=[0-9]*" <<<"$hw" | cut -d= -f2; }
CPUS=$(val CPUs); SOCKETS=$(val SocketsPerBoard); CORES=$(val CoresPerSocket); THREADS=$(val ThreadsPerCore)
MEM=$(( $(val RealMemory) * 90 / 100 ))
cat > "$CONF.new" <<EOF
# generated by setup-slurm.sh
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
$ACCT
JobCompType=jobcomp/none
InactiveLimit=0
KillWait=10
# keep finished jobs visible to squeue for 5 min (snakemake's squeue status mode needs >=120 s)
MinJobAge=300
SlurmctldTimeout=60
SlurmdTimeout=60
Waittime=0
DefMemPerCPU=1000
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS Sockets=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
conf_changed=0
if ! cmp -s "$CONF.new" "$CONF"; then mv "$CONF.new" "$CONF"; conf_changed=1; else rm -f "$CONF.new"; fi

if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$CONF" ]; then :
elif [ -e /etc/slurm/slurm.conf ] || [ -L /etc/slurm/slurm.conf ]; then
  die "/etc/slurm/slurm.conf exists and is not our symlink; move it away first"
else
  mkdir -p /etc/slurm; ln -s "$CONF" /etc/slurm/slurm.conf; touch "$OWN/etc-symlink"
fi
export SLURM_CONF=$CONF

# restart running (own) slurm daemons if the config changed
if [ $conf_changed = 1 ]; then
  for d in slurmd slurmctld; do
    if [ -f "$OWN/$d" ] && alive "$BASE/run/$d.pid" "$d"; then
      log "config changed - restarting $d"
      kill "$(cat "$BASE/run/$d.pid")"
      for _ in $(seq 1 120); do alive "$BASE/run/$d.pid" "$d" || break; sleep 0.25; done
    fi
  done
fi

# ---------------------------------------------------------------- daemons
if [ "$WITH_ACCOUNTING" = 1 ] && ! alive "$BASE/run/slurmdbd.pid" slurmdbd; then
  slurmdbd || die "slurmdbd failed to start"
  wait_pidfile slurmdbd "$BASE/run/slurmdbd.pid" slurmdbd
  own slurmdbd "$BASE/run/slurmdbd.pid" slurmdbd
  wait_for "slurmdbd port 6819" tcp_open 127.0.0.1 6819
fi
if ! alive "$BASE/run/slurmctld.pid" slurmctld; then
  slurmctld -i -f "$CONF" || die "slurmctld failed to start"
  wait_pidfile slurmctld "$BASE/run/slurmctld.pid" slurmctld
  own slurmctld "$BASE/run/slurmctld.pid" slurmctld
fi
wait_for "slurmctld (scontrol ping)" bash -c "scontrol ping | grep -q UP"
if ! alive "$BASE/run/slurmd.pid" slurmd; then
  slurmd -f "$CONF" || die "slurmd failed to start"
  wait_pidfile slurmd "$BASE/run/slurmd.pid" slurmd
  own slurmd "$BASE/run/slurmd.pid" slurmd
fi

# ---------------------------------------------------------------- wait for the node
node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1; }
for _ in $(seq 1 $((WAIT * 2))); do
  st=$(node_state)
  case "$st" in
    idle|mixed|allocated) break ;;
    *drain*|down*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
st=$(node_state)
case "$st" in idle|mixed|allocated) ;; *) die "node $NODE not usable (state '$st')";; esac
# the node may look idle from recovered state before slurmd registers: run a real job step
timeout "$WAIT" srun -N1 -n1 -t 1 --mem=10 true || die "smoke test 'srun true' failed"
if [ "$WITH_ACCOUNTING" = 1 ]; then
  wait_for "cluster registered in slurmdbd" bash -c "sacctmgr -n -P list cluster format=cluster | grep -qx $CLUSTER"
fi
log "ready: node $NODE is $st (accounting=$WITH_ACCOUNTING); clients use /etc/slurm/slurm.conf -> $CONF"
sinfo >&2
