#!/usr/bin/env bash
# shellcheck shell=bash
#
# Helpers for deploy/local/{up,down,test}. Source it; do not run it.
#
# One function per concern. Every function is idempotent: it checks first and
# only acts when something is missing or not running. All state of the stack
# (ClickHouse data, broker data, pid files, logs) lives under $REPO/.local/,
# which .gitignore ignores. The machine's PostgreSQL and Redis are shared: they
# are installed from Debian's packages when missing and started (never stopped) here.

set -euo pipefail

# --- locations (from this file's own location, never the caller's cwd) -----
LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$LIB_DIR/../.." && pwd)"
LOCAL_DIR="$REPO/.local"
LOG_DIR="$LOCAL_DIR/logs"
PID_DIR="$LOCAL_DIR/pids"
CH_DIR="$LOCAL_DIR/clickhouse"
KAFKA_DIR="$LOCAL_DIR/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs"

# The processes of the stack, in start order.
STACK_PROCESSES=(command-api relay query-api projector runner deliverer)

# Backing services on this machine.
PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
CH_HOST=127.0.0.1
CH_HTTP_PORT=8123
CH_TCP_PORT=9000
BROKER_HOST=127.0.0.1
BROKER_PORT=9092

# cargo itself lives here.
case ":$PATH:" in
  *":$HOME/.cargo/bin:"*) ;;
  *) PATH="$HOME/.cargo/bin:$PATH" ;;
esac
export PATH

# --- small utilities ----------------------------------------------------------
log() { printf '==> %s\n' "$*"; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
die() {
  printf '==> ERROR: %s\n' "$*" >&2
  exit 1
}

# Prefix for commands that need root (apt-get).
as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root for: $* (run as root or install sudo)"
  fi
}

# wait_until SECONDS DESCRIPTION CMD... : poll CMD every 0.5 s until it succeeds.
wait_until() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.5
  done
  log "$what: ready"
}

# port_open HOST PORT : true when something accepts TCP connections there.
port_open() {
  # shellcheck disable=SC2016 # $1/$2 expand in the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# http_status URL : prints the HTTP status code (000 when nothing answers).
http_status() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

# pid_alive PIDFILE [NAME] : true when PIDFILE holds the pid of a live process
# (whose command line mentions NAME, when given, to guard against pid reuse).
pid_alive() {
  local pidfile=$1 name=${2:-} pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -n $name ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$name" || return 1
  fi
}

# show_log_tail FILE : the last lines of a log, for failure messages.
show_log_tail() {
  local file=$1
  if [[ -s $file ]]; then
    printf '==> last lines of %s:\n' "$file" >&2
    tail -n 40 "$file" | sed 's/^/    /' >&2
  else
    printf '==> (log %s is empty or missing)\n' "$file" >&2
  fi
}

# stop_pidfile LABEL PIDFILE [NAME] [TIMEOUT] : SIGTERM, wait, then SIGKILL.
stop_pidfile() {
  local label=$1 pidfile=$2 name=${3:-} timeout=${4:-20} pid
  if ! pid_alive "$pidfile" "$name"; then
    log "$label: not running"
    rm -f "$pidfile"
    return 0
  fi
  pid=$(<"$pidfile")
  log "$label: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      warn "$label: still running after ${timeout}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.3
  done
  rm -f "$pidfile"
  log "$label: stopped"
}

ensure_local_dirs() {
  mkdir -p "$LOG_DIR" "$PID_DIR"
}

# --- Debian packages ----------------------------------------------------------
# What the build and ClickHouse need. PostgreSQL and Redis are installed by
# ensure_postgres and ensure_redis, and only when none answers on its port.
APT_PACKAGES=(clickhouse-server clickhouse-client cmake libcurl4-openssl-dev libssl-dev pkg-config curl)

pkg_installed() {
  dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'
}

# apt_install PACKAGE... : installs those of the packages that are missing.
apt_install() {
  local missing=() p
  for p in "$@"; do
    pkg_installed "$p" || missing+=("$p")
  done
  ((${#missing[@]} > 0)) || return 0
  ensure_local_dirs
  local apt_log="$LOG_DIR/apt.log" started=$SECONDS
  log "apt packages: installing ${missing[*]} (log $apt_log)"
  # policy-rc.d-less containers: keep the packages' own init scripts from starting
  # services; the functions below start what the stack needs, the way it needs it.
  if ! {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -q --no-install-recommends "${missing[@]}"
  } >>"$apt_log" 2>&1; then
    show_log_tail "$apt_log"
    die "apt packages: installing ${missing[*]} failed"
  fi
  log "apt packages: installed ${missing[*]} in $((SECONDS - started))s"
}

ensure_apt_packages() {
  apt_install "${APT_PACKAGES[@]}"
  log "apt packages: present (${APT_PACKAGES[*]})"
  # The generated ClickHouse config is written for Debian 12's 18.16 package.
  local chv
  chv=$(dpkg-query -W -f='${Version}' clickhouse-server 2>/dev/null || true)
  case $chv in
    18.16.*) ;;
    *) warn "clickhouse-server is version '$chv'; deploy/local was written for Debian's 18.16" ;;
  esac
}

# --- promptfoo (the reference the assertion engine is compared with) ----------
# The newest 0.121.x; it still runs on Node 20.20 (with a deprecation notice).
PROMPTFOO_VERSION=0.121.20

# ensure_promptfoo : install the pinned promptfoo under .local/promptfoo for the
# assertions crate's `promptfoo` test (cargo test -p assertions --test promptfoo).
# Checks only that the binary is there: after changing PROMPTFOO_VERSION,
# remove .local/promptfoo to reinstall.
ensure_promptfoo() {
  local bin="$REPO/.local/promptfoo/node_modules/.bin/promptfoo"
  if [[ -x $bin ]]; then
    log "promptfoo: installed ($bin)"
    return 0
  fi
  command -v npm >/dev/null 2>&1 || die "promptfoo: npm not found (install Node.js >= 20.20 with npm)"
  ensure_local_dirs
  local install_log="$LOG_DIR/promptfoo-install.log"
  log "promptfoo: npm install promptfoo@$PROMPTFOO_VERSION (1.5 to 2.5 minutes; log: $install_log)"
  local started=$SECONDS
  if ! npm install --prefix "$REPO/.local/promptfoo" --no-audit --no-fund "promptfoo@$PROMPTFOO_VERSION" \
    >"$install_log" 2>&1; then
    show_log_tail "$install_log"
    die "promptfoo: npm install failed"
  fi
  [[ -x $bin ]] || die "promptfoo: npm install succeeded but $bin is missing"
  log "promptfoo: installed in $((SECONDS - started))s"
}

# --- PostgreSQL (the machine's cluster; started, never stopped, here) ---------
pg_answers() {
  command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$PG_HOST" -p "$PG_PORT"
}

# pg_version : the newest installed PostgreSQL major version (empty when none).
pg_version() {
  find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1
}

# trust_local_connections VERSION : the stack's URLs carry no password, so the
# local cluster trusts TCP connections from this machine (and only those). Our
# lines go first: pg_hba.conf takes the first line that matches.
trust_local_connections() {
  local hba="/etc/postgresql/$1/main/pg_hba.conf" marker="# promptcards: trust local TCP"
  [[ -f $hba ]] || die "postgres: $hba missing"
  grep -qF "$marker" "$hba" && return 0
  log "postgres: trusting TCP connections from 127.0.0.1 and ::1 ($hba)"
  {
    echo "$marker (added by deploy/local/lib.sh)"
    echo "host all all 127.0.0.1/32 trust"
    echo "host all all ::1/128 trust"
    cat "$hba"
  } >"$hba.new"
  chown --reference="$hba" "$hba.new"
  chmod --reference="$hba" "$hba.new"
  mv -f "$hba.new" "$hba"
}

ensure_postgres() {
  if pg_answers; then
    log "postgres: answering on $PG_HOST:$PG_PORT"
    return 0
  fi
  [[ -n $(pg_version) ]] || apt_install postgresql postgresql-client
  local version
  version=$(pg_version)
  [[ -n $version ]] || die "postgres: installed, but no server under /usr/lib/postgresql"
  if [[ ! -d /etc/postgresql/$version/main ]]; then
    log "postgres: creating cluster $version/main"
    as_root pg_createcluster "$version" main >/dev/null
  fi
  trust_local_connections "$version"
  log "postgres: starting cluster $version/main"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload ||
    warn "postgres: pg_ctlcluster returned non-zero; waiting for it anyway"
  wait_until 60 "postgres" pg_answers ||
    die "postgres: not answering on $PG_HOST:$PG_PORT after 60s (see /var/log/postgresql/)"
}

# ensure_database NAME : create the Postgres database when missing.
ensure_database() {
  local name=${1:?usage: ensure_database NAME}
  [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "ensure_database: invalid database name '$name'"
  local psql=(psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres)
  if [[ $("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'") == 1 ]]; then
    log "postgres: database $name exists"
    return 0
  fi
  log "postgres: creating database $name"
  if ! "${psql[@]}" -c "CREATE DATABASE \"$name\"" 2>/dev/null; then
    # Lost a race with a concurrent creator? Then it exists now.
    [[ $("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'") == 1 ]] ||
      die "postgres: could not create database $name"
  fi
}

# --- Redis (the machine's server; started, never stopped, here) ---------------
redis_answers() {
  command -v redis-cli >/dev/null 2>&1 || return 1
  [[ $(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

ensure_redis() {
  if redis_answers; then
    log "redis: answering on $REDIS_HOST:$REDIS_PORT"
    return 0
  fi
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server redis-tools
  log "redis: starting"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_until 30 "redis" redis_answers ||
    die "redis: not answering on $REDIS_HOST:$REDIS_PORT after 30s (see /var/log/redis/ci.log)"
}

# --- ClickHouse (Debian's 18.16 package, run as a private daemon) --------------
clickhouse_answers() {
  [[ $(curl -s --max-time 2 "http://$CH_HOST:$CH_HTTP_PORT/ping" 2>/dev/null) == "Ok." ]]
}

# Writes config.xml and users.xml for clickhouse-server 18.16 into $CH_DIR.
# Only keys the 18.16 server reads (see its /etc/clickhouse-server/config.xml).
# No https_port / tcp_port_secure / interserver_http_port: 18.16 opens those
# only when configured (and it has no mysql_port at all).
write_clickhouse_config() {
  mkdir -p "$CH_DIR/data" "$CH_DIR/tmp" "$CH_DIR/user_files" "$CH_DIR/format_schemas" "$CH_DIR/log"
  cat >"$CH_DIR/config.xml.new" <<EOF
<?xml version="1.0"?>
<!-- Generated by deploy/local/lib.sh (start_clickhouse); rewritten on every start. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$CH_DIR/log/clickhouse-server.log</log>
        <errorlog>$CH_DIR/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>

    <listen_host>$CH_HOST</listen_host>
    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>

    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>536870912</mark_cache_size>

    <path>$CH_DIR/data/</path>
    <tmp_path>$CH_DIR/tmp/</tmp_path>
    <user_files_path>$CH_DIR/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>
    <users_config>$CH_DIR/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>

    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>

    <query_log>
        <database>system</database>
        <table>query_log</table>
        <partition_by>toYYYYMM(event_date)</partition_by>
        <flush_interval_milliseconds>7500</flush_interval_milliseconds>
    </query_log>
</yandex>
EOF
  cat >"$CH_DIR/users.xml.new" <<'EOF'
<?xml version="1.0"?>
<!-- Generated by deploy/local/lib.sh (start_clickhouse); rewritten on every start. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
        <readonly>
            <readonly>1</readonly>
        </readonly>
    </profiles>
    <users>
        <!-- default: no password, reachable from this machine only -->
        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
  mv -f "$CH_DIR/config.xml.new" "$CH_DIR/config.xml"
  mv -f "$CH_DIR/users.xml.new" "$CH_DIR/users.xml"
}

start_clickhouse() {
  local pidfile="$CH_DIR/clickhouse-server.pid"
  if clickhouse_answers; then
    log "clickhouse: answering on http://$CH_HOST:$CH_HTTP_PORT"
    return 0
  fi
  if pid_alive "$pidfile" clickhouse-server; then
    log "clickhouse: already started (pid $(<"$pidfile")), waiting for it"
  else
    local server
    server=$(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)
    [[ -x $server ]] || die "clickhouse: clickhouse-server not installed (run ensure_apt_packages)"
    if port_open "$CH_HOST" "$CH_HTTP_PORT" || port_open "$CH_HOST" "$CH_TCP_PORT"; then
      die "clickhouse: port $CH_HTTP_PORT or $CH_TCP_PORT is taken by something that is not a working ClickHouse"
    fi
    write_clickhouse_config
    rm -f "$pidfile"
    log "clickhouse: starting (data and logs in $CH_DIR)"
    # --daemon forks and detaches; --pid-file is written by the server itself.
    (cd "$CH_DIR" && "$server" --config-file="$CH_DIR/config.xml" --pid-file="$pidfile" --daemon \
      >>"$CH_DIR/log/stdout.log" 2>&1 </dev/null) ||
      {
        show_log_tail "$CH_DIR/log/stdout.log"
        die "clickhouse: clickhouse-server failed to start"
      }
  fi
  if ! wait_until 60 "clickhouse (http://$CH_HOST:$CH_HTTP_PORT)" clickhouse_answers; then
    show_log_tail "$CH_DIR/log/clickhouse-server.err.log"
    die "clickhouse: /ping did not answer 'Ok.' within 60s"
  fi
}

stop_clickhouse() {
  stop_pidfile clickhouse "$CH_DIR/clickhouse-server.pid" clickhouse-server 60
}

# ensure_clickhouse_database NAME : CREATE DATABASE IF NOT EXISTS over HTTP.
ensure_clickhouse_database() {
  local name=${1:?usage: ensure_clickhouse_database NAME}
  [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "ensure_clickhouse_database: invalid name '$name'"
  curl -fsS --max-time 10 "http://$CH_HOST:$CH_HTTP_PORT/" --data-binary "CREATE DATABASE IF NOT EXISTS $name" >/dev/null ||
    die "clickhouse: could not create database $name"
  log "clickhouse: database $name exists"
}

# --- broker (Apache Kafka in KRaft mode, jars from Maven Central) --------------
# deploy/local/kafka/pom.xml pins the version; ensure_kafka copies the jars into
# $KAFKA_LIBS once (again only when the pom changes), and deploy/local/kafka/broker
# formats the storage on first use and runs the node. Topics are created by the
# stack's processes themselves (service::kafka::ensure_topic), not here.
KAFKA_POM="$LIB_DIR/kafka/pom.xml"

ensure_kafka() {
  local stamp="$KAFKA_LIBS/.pom.sha256" want
  want=$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)
  if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then
    log "kafka: jars present ($KAFKA_LIBS)"
    return 0
  fi
  command -v java >/dev/null 2>&1 || die "kafka: java not found (Kafka 4 needs Java 17 or newer)"
  command -v mvn >/dev/null 2>&1 || die "kafka: mvn not found (Maven fetches Kafka from Maven Central)"
  ensure_local_dirs
  local mvn_log="$LOG_DIR/kafka-fetch.log" started=$SECONDS
  log "kafka: fetching the jars from Maven Central (log $mvn_log)"
  rm -rf "$KAFKA_LIBS.new"
  if ! mvn -B -q -f "$KAFKA_POM" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$KAFKA_LIBS.new" >"$mvn_log" 2>&1; then
    show_log_tail "$mvn_log"
    die "kafka: mvn dependency:copy-dependencies failed"
  fi
  echo "$want" >"$KAFKA_LIBS.new/.pom.sha256"
  rm -rf "$KAFKA_LIBS"
  mv "$KAFKA_LIBS.new" "$KAFKA_LIBS"
  log "kafka: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - started))s"
}

start_broker() {
  local pidfile="$PID_DIR/kafka.pid" logfile="$LOG_DIR/kafka.log"
  if pid_alive "$pidfile" kafka.Kafka && port_open "$BROKER_HOST" "$BROKER_PORT"; then
    log "broker: Kafka running (pid $(<"$pidfile")) on $BROKER_HOST:$BROKER_PORT"
    return 0
  fi
  if ! pid_alive "$pidfile" kafka.Kafka && port_open "$BROKER_HOST" "$BROKER_PORT"; then
    # A broker of someone else's (another checkout's, or a system one): use it.
    log "broker: something already listens on $BROKER_HOST:$BROKER_PORT; using it as the broker"
    return 0
  fi
  ensure_local_dirs
  if pid_alive "$pidfile"; then
    log "broker: already started (pid $(<"$pidfile")), waiting for it"
  else
    log "broker: starting Kafka on $BROKER_HOST:$BROKER_PORT (data $KAFKA_DIR/node, log $logfile)"
    printf '\n=== %s starting kafka ===\n' "$(date -u +%FT%TZ)" >>"$logfile"
    KAFKA_LIBS="$KAFKA_LIBS" nohup "$LIB_DIR/kafka/broker" "$KAFKA_DIR/node" "$BROKER_PORT" \
      >>"$logfile" 2>&1 </dev/null &
    echo $! >"$pidfile"
  fi
  local deadline=$((SECONDS + 90))
  until port_open "$BROKER_HOST" "$BROKER_PORT"; do
    # By pid only: the script formats storage before it execs java.
    if ! pid_alive "$pidfile"; then
      show_log_tail "$logfile"
      die "broker: Kafka exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      show_log_tail "$logfile"
      die "broker: Kafka not accepting connections on $BROKER_HOST:$BROKER_PORT after 90s"
    fi
    sleep 0.2
  done
  log "broker: Kafka ready on $BROKER_HOST:$BROKER_PORT"
}

stop_broker() {
  stop_pidfile broker "$PID_DIR/kafka.pid" kafka.Kafka 30
}

# --- the stack's own processes ----------------------------------------------
# process_addr NAME : the listen address of a stack process (env, else default).
process_addr() {
  case $1 in
    command-api) echo "${COMMAND_API_ADDR:-127.0.0.1:8080}" ;;
    query-api) echo "${QUERY_API_ADDR:-127.0.0.1:8081}" ;;
    projector) echo "${PROJECTOR_ADDR:-127.0.0.1:8082}" ;;
    runner) echo "${RUNNER_ADDR:-127.0.0.1:8083}" ;;
    relay) echo "${RELAY_ADDR:-127.0.0.1:8084}" ;;
    deliverer) echo "${DELIVERER_ADDR:-127.0.0.1:8085}" ;;
    *) die "unknown process '$1' (expected one of: ${STACK_PROCESSES[*]})" ;;
  esac
}

# binary_stamp FILE : changes whenever cargo replaces the binary.
binary_stamp() {
  stat -c '%i %s %Y' "$1"
}

# start_process NAME : start target/release/NAME unless it already runs, then
# wait until GET http://ADDR/readyz answers 200. A process still running an
# older build (the binary was rebuilt since it started) is restarted.
start_process() {
  local name=${1:?usage: start_process NAME}
  local bin="$REPO/target/release/$name"
  local pidfile="$PID_DIR/$name.pid" stampfile="$PID_DIR/$name.stamp" logfile="$LOG_DIR/$name.log"
  local addr
  addr=$(process_addr "$name")
  [[ -x $bin ]] || die "$name: $bin not built (cargo build --release --bins)"
  ensure_local_dirs

  if pid_alive "$pidfile" "$name"; then
    if [[ -f $stampfile && $(<"$stampfile") != "$(binary_stamp "$bin")" ]]; then
      log "$name: binary was rebuilt, restarting"
      stop_process "$name"
    else
      log "$name: already running (pid $(<"$pidfile"))"
    fi
  fi
  if ! pid_alive "$pidfile" "$name"; then
    log "$name: starting on $addr (log $logfile)"
    binary_stamp "$bin" >"$stampfile"
    (
      cd "$REPO"
      printf '\n=== %s starting %s ===\n' "$(date -u +%FT%TZ)" "$name" >>"$logfile"
      nohup "$bin" >>"$logfile" 2>&1 </dev/null &
      echo $! >"$pidfile"
    )
  fi

  local url="http://$addr/readyz" deadline=$((SECONDS + ${START_TIMEOUT:-60})) status
  while :; do
    status=$(http_status "$url")
    [[ $status == 200 ]] && break
    # By pid only: until the forked shell has exec'd the binary, its command line is ours.
    if ! pid_alive "$pidfile"; then
      show_log_tail "$logfile"
      die "$name: exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      show_log_tail "$logfile"
      die "$name: GET $url did not return 200 within ${START_TIMEOUT:-60}s (last status: $status)"
    fi
    sleep 0.1
  done
  log "$name: ready ($url)"
}

stop_process() {
  local name=${1:?usage: stop_process NAME}
  stop_pidfile "$name" "$PID_DIR/$name.pid" "$name" 20
  rm -f "$PID_DIR/$name.stamp"
}

# --- environment --------------------------------------------------------------
# export_stack_env : the stack's settings with dev defaults; values already in
# the environment win.
export_stack_env() {
  : "${DATABASE_URL:=postgres://postgres@$PG_HOST:$PG_PORT/promptcards}"
  : "${REDIS_URL:=redis://$REDIS_HOST:$REDIS_PORT}"
  : "${KAFKA_BROKERS:=$BROKER_HOST:$BROKER_PORT}"
  : "${KAFKA_TOPIC:=promptcards.events}"
  : "${CLICKHOUSE_URL:=http://$CH_HOST:$CH_HTTP_PORT}"
  : "${CLICKHOUSE_DATABASE:=promptcards}"
  : "${JWT_SECRET:=dev-only-secret-change-me}"
  : "${COMMAND_API_ADDR:=127.0.0.1:8080}"
  : "${QUERY_API_ADDR:=127.0.0.1:8081}"
  : "${PROJECTOR_ADDR:=127.0.0.1:8082}"
  : "${RUNNER_ADDR:=127.0.0.1:8083}"
  : "${RELAY_ADDR:=127.0.0.1:8084}"
  : "${DELIVERER_ADDR:=127.0.0.1:8085}"
  # Webhooks may not target internal addresses; on a development machine the receivers are
  # local, so loopback is allowed here (and `up` says so). Never set this in production.
  : "${WEBHOOK_ALLOWED_CIDRS=127.0.0.0/8}"
  export DATABASE_URL REDIS_URL KAFKA_BROKERS KAFKA_TOPIC CLICKHOUSE_URL CLICKHOUSE_DATABASE \
    JWT_SECRET COMMAND_API_ADDR QUERY_API_ADDR PROJECTOR_ADDR RUNNER_ADDR RELAY_ADDR DELIVERER_ADDR \
    WEBHOOK_ALLOWED_CIDRS
}
