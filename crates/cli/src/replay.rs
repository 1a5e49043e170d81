//! `promptcards replay`: rebuilds projections from the event store while the system keeps
//! serving and writing.
//!
//! Postgres: the read models are projected, by the projector's own `PostgresSink`, into a
//! shadow schema `read_rebuild` shaped like `read`, up to the live head. Then one transaction
//! takes `read.stream_versions` exclusively (every live projector batch starts by locking its
//! rows there, so live batches wait instead of failing, and a batch in flight finishes first),
//! applies what was appended meanwhile, brings every stream the live projector has applied
//! further than the shadow up to the live version, and renames `read` to `read_old` and
//! `read_rebuild` to `read`. Once it commits, the waiting live batches resolve `read` to the
//! rebuilt tables and skip what the shadow already holds, by stream version. So the rebuilt
//! schema holds, per stream, at least what live held, and live continues from there: the
//! result is what live would have been (INVARIANT 8).
//!
//! ClickHouse: `events` and `test_results` are filled in a shadow database `<db>_rebuild` by the
//! projector's `ClickHouseSink`, swapped in with one `RENAME TABLE`, and topped up afterwards with
//! whatever was appended since; rows are keyed by stream version in ReplacingMergeTrees, so the
//! overlap with the live projector collapses.
//!
//! Redis: the per-stream version keys are raised again by the projector's `RedisSink`, which
//! never lowers a key; nothing is published, so subscribers do not see history as news.

use crate::output::{self, progress};
use crate::{shadow, Outcome, Settings};
use anyhow::{bail, Context};
use clap::{ArgGroup, Args, ValueEnum};
use domain::names::READ_MODELS_CHANNEL;
use event_store::{Cursor, EventFilter, EventStore};
use futures::TryStreamExt;
use indicatif::ProgressBar;
use projector::checksum;
use projector::clickhouse_sink::ClickHouseSink;
use projector::postgres::{PostgresSink, READ_SCHEMA};
use projector::redis_sink::RedisSink;
use projector::Sink;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// The shadow schema a Postgres rebuild fills.
pub const SHADOW_SCHEMA: &str = "read_rebuild";
/// What `read` is renamed to during the swap, and dropped right after.
pub const OLD_SCHEMA: &str = "read_old";

/// Session advisory lock keys (the two-integer key space, apart from the store's stream locks):
/// one replay per projection at a time.
const LOCK_CLASS: i32 = 0x7072_6370; // "prcp"

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Projection {
    /// Every table of the Postgres read models (schema `read`).
    Postgres,
    /// ClickHouse's `events` and `test_results`.
    Clickhouse,
    /// Redis' per-stream version keys.
    Redis,
}

impl Projection {
    fn name(self) -> &'static str {
        match self {
            Projection::Postgres => "postgres",
            Projection::Clickhouse => "clickhouse",
            Projection::Redis => "redis",
        }
    }
}

/// Shown by `--help` after the options.
pub const DETAILS: &str = "\
postgres: projects every event into a shadow schema read_rebuild shaped like read, catches up \
to the live head, then in one transaction locks read.stream_versions (live projector batches \
wait, they do not fail), applies what was appended meanwhile and swaps the schemas; live \
batches then continue on the rebuilt tables. clickhouse: fills a shadow database \
<db>_rebuild, swaps the tables with one RENAME and tops them up. redis: raises the version \
keys again, publishing nothing. Prints events/s; a progress bar shows on a terminal.\n\n\
--from POS resumes an interrupted rebuild: the shadow it was filling is kept and projecting \
continues right after the event at position POS in the store's global order (transaction \
id, position), as the interrupted run printed. Every projection skips or collapses what it \
already holds, so a lower POS is safe, only slower; --from 0 re-reads everything into the \
kept shadow. For redis, which has no shadow, it re-applies the version keys after POS.";

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["projection", "all"])))]
pub struct ReplayArgs {
    /// The projection to rebuild.
    #[arg(value_enum)]
    pub projection: Option<Projection>,
    /// Rebuild every projection: Postgres, then ClickHouse, then Redis.
    #[arg(long)]
    pub all: bool,
    /// Resume an interrupted rebuild after the event at this global position.
    #[arg(long, value_name = "POS")]
    pub from: Option<i64>,
    /// Events read and applied per batch (and per transaction, for Postgres).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub batch_size: i64,
}

pub async fn run(settings: &Settings, args: ReplayArgs) -> anyhow::Result<Outcome> {
    let projections = match args.projection {
        Some(projection) if !args.all => vec![projection],
        _ => vec![Projection::Postgres, Projection::Clickhouse, Projection::Redis],
    };
    let store = settings.store().await?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::SeqCst);
            }
        });
    }
    for projection in projections {
        let mut lock = store.pool().acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(projection as i32)
            .fetch_one(&mut *lock)
            .await?;
        if !locked {
            bail!("another replay of {} is running", projection.name());
        }
        let mut run = Run {
            store: &store,
            settings,
            args: &args,
            stop: &stop,
            bar: progress(store.head().await?.max(1) as u64, projection.name()),
            started: Instant::now(),
            applied: 0,
        };
        let result = match projection {
            Projection::Postgres => run.postgres().await,
            Projection::Clickhouse => run.clickhouse().await,
            Projection::Redis => run.redis().await,
        };
        run.bar.finish_and_clear();
        sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(projection as i32)
            .execute(&mut *lock)
            .await?;
        match result? {
            Replayed::Done(summary) => println!(
                "{}: rebuilt from {} events in {:.2} s ({:.0} events/s); {summary}",
                projection.name(),
                run.applied,
                run.started.elapsed().as_secs_f64(),
                output::rate(run.applied, run.started.elapsed()),
            ),
            Replayed::Interrupted(cursor) => {
                eprintln!(
                    "{}: interrupted after {} events. The shadow holds every event up to position {} of the \
                     store's order; resume with: promptcards replay {} --from {}",
                    projection.name(),
                    run.applied,
                    cursor.position,
                    projection.name(),
                    cursor.position
                );
                return Ok(Outcome::Interrupted);
            }
        }
    }
    Ok(Outcome::Done)
}

enum Replayed {
    /// Finished; says where it swapped.
    Done(String),
    /// Ctrl-C; everything up to the cursor is applied.
    Interrupted(Cursor),
}

/// Why feeding a sink stopped.
enum Fed {
    CaughtUp,
    Interrupted,
}

struct Run<'a> {
    store: &'a EventStore,
    settings: &'a Settings,
    args: &'a ReplayArgs,
    stop: &'a AtomicBool,
    bar: ProgressBar,
    started: Instant,
    /// Events read from the store and handed to a sink so far.
    applied: u64,
}

impl Run<'_> {
    /// Where to start: the beginning, or right after the event at `--from`.
    async fn start(&self) -> anyhow::Result<Cursor> {
        match self.args.from {
            None | Some(0) => Ok(Cursor::START),
            Some(position) => {
                let filter = EventFilter {
                    from_position: Some(position),
                    to_position: Some(position),
                    ..EventFilter::default()
                };
                let event = self.store.events(&filter).try_next().await?.with_context(|| {
                    format!("no event at position {position}; give the position the interrupted replay printed")
                })?;
                Ok(Cursor::after(&event))
            }
        }
    }

    /// Replays the store after `cursor` into `sink` with `projector::catch_up`, moving `cursor`
    /// past each applied batch. Stops at Ctrl-C, or when caught up: a batch shorter than the
    /// batch size when `nearly` (the rest is for a final catch-up), else an empty read.
    async fn feed<S: Sink>(&mut self, sink: &S, cursor: &mut Cursor, nearly: bool) -> anyhow::Result<Fed> {
        if self.stop.load(Ordering::SeqCst) {
            return Ok(Fed::Interrupted);
        }
        let (store, batch_size, stop) = (self.store, self.args.batch_size, self.stop);
        let mut fed = Fed::CaughtUp;
        *cursor = projector::catch_up(store, sink, *cursor, batch_size, |events| {
            let last = events.last().map_or(0, |e| e.position);
            self.advance(events.len(), last);
            if nearly && (events.len() as i64) < batch_size {
                ControlFlow::Break(())
            } else if stop.load(Ordering::SeqCst) {
                fed = Fed::Interrupted;
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await?;
        Ok(fed)
    }

    fn advance(&mut self, events: usize, position: i64) {
        self.applied += events as u64;
        if self.bar.length().is_some_and(|len| (position as u64) > len) {
            self.bar.set_length(position as u64);
        }
        self.bar.set_position(self.bar.position().max(position as u64));
        self.bar.set_message(format!(
            "{:.0} events/s",
            output::rate(self.applied, self.started.elapsed())
        ));
    }

    async fn postgres(&mut self) -> anyhow::Result<Replayed> {
        let pool = self.store.pool().clone();
        shadow::check_swappable(&pool).await?;
        // Left over only by a swap that committed and died before dropping it.
        shadow::drop(&pool, OLD_SCHEMA).await?;
        if self.args.from.is_some() {
            if !shadow::exists(&pool, SHADOW_SCHEMA).await? {
                bail!("there is no {SHADOW_SCHEMA} schema to resume; replay without --from");
            }
            let mut conn = pool.acquire().await?;
            let (live, shadowed) = (
                checksum::tables(&mut conn, READ_SCHEMA).await?,
                checksum::tables(&mut conn, SHADOW_SCHEMA).await?,
            );
            if live != shadowed {
                bail!("{SHADOW_SCHEMA} does not have the tables of {READ_SCHEMA} (a migration ran since?); replay without --from");
            }
        } else {
            shadow::create(&pool, SHADOW_SCHEMA).await?;
        }
        let sink = PostgresSink::with_schema(pool.clone(), SHADOW_SCHEMA)?;
        let mut cursor = self.start().await?;
        if let Fed::Interrupted = self.feed(&sink, &mut cursor, true).await? {
            return Ok(Replayed::Interrupted(cursor));
        }
        self.bar.set_message("swapping");
        let resume = cursor.position;
        let swap = self.swap(&sink, &mut cursor).await.with_context(|| {
            format!("the swap failed and {READ_SCHEMA} is unchanged; {SHADOW_SCHEMA} holds every event up to position {resume}: resume with promptcards replay postgres --from {resume}")
        })?;
        shadow::drop(&pool, OLD_SCHEMA).await.with_context(|| {
            format!("the rebuilt read models are in place, but dropping the old ones ({OLD_SCHEMA}) failed; the next replay drops it")
        })?;
        Ok(Replayed::Done(format!(
            "swapped into schema {READ_SCHEMA} at position {}, after {} events in the final catch-up \
             and {} brought up to the live projector's versions",
            cursor.position, swap.caught_up, swap.repaired
        )))
    }

    /// The atomic swap; see the module documentation for why the result equals live.
    async fn swap(&mut self, sink: &PostgresSink, cursor: &mut Cursor) -> anyhow::Result<Swap> {
        let mut tx = self.store.pool().begin().await?;
        sqlx::query("SET LOCAL lock_timeout = '60s'").execute(&mut *tx).await?;
        sqlx::query(&format!(
            "LOCK TABLE {READ_SCHEMA}.stream_versions IN ACCESS EXCLUSIVE MODE"
        ))
        .execute(&mut *tx)
        .await
        .context("waiting for the live projector's batch in flight")?;
        // Once this transaction writes it has an id, and the store's reader stops below it, so
        // this catch-up ends even while writers keep appending; what they append later reaches
        // the live projector, which applies it to the rebuilt schema.
        let mut swap = Swap::default();
        loop {
            let events = self.store.read_all(*cursor, self.args.batch_size).await?;
            let Some(last) = events.last() else { break };
            sink.apply_in(&mut tx, &events).await?;
            *cursor = Cursor::after(last);
            swap.caught_up += events.len() as u64;
            self.advance(events.len(), last.position);
        }
        // A live projector fed by something faster than the store's safe reader may have applied
        // events the reader does not return yet; take those streams up to the live versions.
        let behind: Vec<(Uuid, i64, i64)> = sqlx::query_as(&format!(
            "SELECT l.stream_id, l.version, COALESCE(s.version, 0)
             FROM {READ_SCHEMA}.stream_versions l
             LEFT JOIN {SHADOW_SCHEMA}.stream_versions s ON s.stream_id = l.stream_id
             WHERE COALESCE(s.version, 0) < l.version"
        ))
        .fetch_all(&mut *tx)
        .await?;
        for (stream_id, live, shadowed) in behind {
            let mut events = self.store.read_stream(stream_id, shadowed).await?;
            events.retain(|e| e.version <= live);
            if events.last().map(|e| e.version) != Some(live) {
                bail!("the read models have applied stream {stream_id} up to version {live}, which the event store does not hold; run promptcards verify");
            }
            sink.apply_in(&mut tx, &events).await?;
            swap.repaired += events.len() as u64;
            self.advance(events.len(), cursor.position);
        }
        sqlx::query(&format!("ALTER SCHEMA {READ_SCHEMA} RENAME TO {OLD_SCHEMA}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("ALTER SCHEMA {SHADOW_SCHEMA} RENAME TO {READ_SCHEMA}"))
            .execute(&mut *tx)
            .await?;
        // Read-your-writes waiters look again at the new tables.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(READ_MODELS_CHANNEL)
            .bind(cursor.position.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(swap)
    }

    async fn clickhouse(&mut self) -> anyhow::Result<Replayed> {
        let (url, database) = (&self.settings.clickhouse_url, &self.settings.clickhouse_database);
        if !shadow::is_plain(database) {
            bail!("ClickHouse database {database:?} needs quoting; this tool handles plain lower-case names");
        }
        let rebuild = format!("{database}_rebuild");
        let admin = service::clickhouse::client(url, "default");
        ClickHouseSink::migrate(url, database)
            .await
            .with_context(|| format!("cannot reach ClickHouse at {url}"))?;
        if self.args.from.is_some() {
            let tables: u64 = admin
                .query("SELECT count() FROM system.tables WHERE database = ? AND name IN ('events', 'test_results')")
                .bind(&rebuild)
                .fetch_one()
                .await?;
            if tables != 2 {
                bail!("there is no ClickHouse database {rebuild} to resume; replay without --from");
            }
        } else {
            admin
                .query(&format!("DROP DATABASE IF EXISTS {rebuild}"))
                .execute()
                .await?;
            ClickHouseSink::migrate(url, &rebuild).await?;
        }
        let sink = ClickHouseSink::new(service::clickhouse::client(url, &rebuild));
        let mut cursor = self.start().await?;
        if let Fed::Interrupted = self.feed(&sink, &mut cursor, true).await? {
            return Ok(Replayed::Interrupted(cursor));
        }
        self.bar.set_message("swapping");
        admin
            .query(&format!(
                "RENAME TABLE {database}.events TO {rebuild}.events_old, {rebuild}.events TO {database}.events, \
                 {database}.test_results TO {rebuild}.test_results_old, {rebuild}.test_results TO {database}.test_results"
            ))
            .execute()
            .await?;
        // Whatever the live projector wrote to the old tables after the shadow caught up is
        // written again here, to the swapped-in tables; duplicates collapse by key.
        let live = ClickHouseSink::new(service::clickhouse::client(url, database));
        let swapped_at = cursor.position;
        let _ = self.feed(&live, &mut cursor, false).await?;
        admin
            .query(&format!("DROP DATABASE IF EXISTS {rebuild}"))
            .execute()
            .await?;
        Ok(Replayed::Done(format!(
            "swapped into {database}.events and {database}.test_results at position {swapped_at}, topped up to {}",
            cursor.position
        )))
    }

    async fn redis(&mut self) -> anyhow::Result<Replayed> {
        let url = &self.settings.redis_url;
        let sink = RedisSink::connect(url)
            .await
            .with_context(|| format!("cannot connect to Redis at {}", crate::redact(url)))?
            .without_publishing();
        let mut cursor = self.start().await?;
        if let Fed::Interrupted = self.feed(&sink, &mut cursor, false).await? {
            return Ok(Replayed::Interrupted(cursor));
        }
        Ok(Replayed::Done(format!(
            "version keys raised up to position {}; nothing published",
            cursor.position
        )))
    }
}

#[derive(Debug, Default)]
struct Swap {
    /// Events applied inside the swap transaction.
    caught_up: u64,
    /// Events applied because the live projector was ahead of the store's safe reader.
    repaired: u64,
}
