//! What the Postgres read models hold, as one comparable value: `promptcards verify` compares
//! the live read models with a fresh projection by it, and the tests compare a replay with
//! the live projection by it.

use sqlx::PgConnection;
use std::collections::BTreeMap;

/// Per table: row count and an md5 over every row (all columns, as JSON) in a fixed order.
pub type Checksums = BTreeMap<String, (i64, String)>;

/// The base tables of `schema`, sorted.
pub async fn tables(conn: &mut PgConnection, schema: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(conn)
    .await
}

/// Checksums of the given tables of `schema`, read on `conn` (so a caller's snapshot holds).
pub async fn checksums(conn: &mut PgConnection, schema: &str, tables: &[String]) -> Result<Checksums, sqlx::Error> {
    let mut sums = Checksums::new();
    for table in tables {
        let sum: (i64, String) = sqlx::query_as(&format!(
            "SELECT count(*), md5(coalesce(string_agg(row_to_json(t)::text, ',' ORDER BY row_to_json(t)::text), ''))
             FROM {schema}.{table} t"
        ))
        .fetch_one(&mut *conn)
        .await?;
        sums.insert(table.clone(), sum);
    }
    Ok(sums)
}
