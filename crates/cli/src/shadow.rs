//! Schemas shaped like `read`: the shadow a replay fills before swapping it in, and the scratch
//! schema `verify` projects into.

use anyhow::{bail, Context};
use projector::checksum::tables;
use projector::postgres::READ_SCHEMA;
use sqlx::{PgConnection, PgPool};

pub async fn exists(pool: &PgPool, schema: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(pool)
        .await
}

/// Refuses to copy or replace `read` when it holds, or is depended on by, something a table
/// copy would lose: the old schema is dropped with CASCADE after a swap, which would take
/// views or foreign keys elsewhere with it, and a type of its own would take columns.
pub async fn check_swappable(pool: &PgPool) -> anyhow::Result<()> {
    let strangers: Vec<String> = sqlx::query_scalar(
        "SELECT format('%s %I', CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                                   WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' ELSE 'relation' END, c.relname)
         FROM pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relkind NOT IN ('r', 'i', 'p', 'I')
         UNION ALL
         SELECT format('function %I', p.proname) FROM pg_proc p WHERE p.pronamespace = $1::regnamespace
         UNION ALL
         SELECT format('type %I', t.typname) FROM pg_type t
         WHERE t.typnamespace = $1::regnamespace AND t.typrelid = 0
           AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = t.typelem AND e.typrelid <> 0)
         UNION ALL
         SELECT format('view %s', v.oid::regclass) FROM pg_depend d
           JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
           JOIN pg_class t ON t.oid = d.refobjid
         WHERE d.classid = 'pg_rewrite'::regclass AND t.relnamespace = $1::regnamespace
           AND v.relnamespace <> $1::regnamespace
         UNION ALL
         SELECT format('foreign key %I on %s', k.conname, k.conrelid::regclass) FROM pg_constraint k
           JOIN pg_class t ON t.oid = k.confrelid
         WHERE k.contype = 'f' AND t.relnamespace = $1::regnamespace",
    )
    .bind(READ_SCHEMA)
    .fetch_all(pool)
    .await?;
    if !strangers.is_empty() {
        bail!(
            "schema {READ_SCHEMA} holds or is referenced by objects a table copy would lose ({}); \
             rebuilding it this way would drop them",
            strangers.join(", ")
        );
    }
    Ok(())
}

/// Creates `schema` (dropping any leftover of that name) with every table of `read`: columns,
/// defaults, generated columns, checks and comments (`LIKE ... INCLUDING ALL`), and the same
/// primary keys, unique constraints and indexes under the same names, so that once renamed to
/// `read` it is indistinguishable from the schema the migrations built. Returns the tables.
pub async fn create(pool: &PgPool, schema: &str) -> anyhow::Result<Vec<String>> {
    anyhow::ensure!(schema != READ_SCHEMA, "refusing to recreate {READ_SCHEMA} itself");
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut *tx)
        .await?;
    let tables = tables(&mut tx, READ_SCHEMA).await?;
    anyhow::ensure!(
        !tables.is_empty(),
        "schema {READ_SCHEMA} has no tables: have the migrations run?"
    );
    if let Some(odd) = tables.iter().find(|t| !is_plain(t)) {
        bail!("table {READ_SCHEMA}.{odd:?} has a name this tool does not quote; rename it or rebuild by hand");
    }
    for table in &tables {
        sqlx::query(&format!(
            "CREATE TABLE {schema}.{table} (LIKE {READ_SCHEMA}.{table} INCLUDING ALL EXCLUDING INDEXES)"
        ))
        .execute(&mut *tx)
        .await?;
        // Constraints that own an index (primary keys, unique and exclusion constraints) are
        // recreated as constraints; other indexes from their definitions.
        let indexes: Vec<IndexDefinition> = sqlx::query_as(
            "SELECT pg_get_indexdef(x.indexrelid) AS indexdef, k.conname::text AS constraint_name,
                    pg_get_constraintdef(k.oid) AS constraint_definition,
                    quote_ident(n.nspname) AS quoted_schema, quote_ident(t.relname) AS quoted_table
             FROM pg_index x
             JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
             LEFT JOIN pg_constraint k ON k.conindid = x.indexrelid AND k.conrelid = x.indrelid
                                       AND k.contype IN ('p', 'u', 'x')
             WHERE n.nspname = $1 AND t.relname = $2
             ORDER BY x.indexrelid",
        )
        .bind(READ_SCHEMA)
        .bind(table)
        .fetch_all(&mut *tx)
        .await?;
        for IndexDefinition {
            indexdef,
            constraint_name,
            constraint_definition,
            quoted_schema,
            quoted_table,
        } in indexes
        {
            let statement = match (constraint_name, constraint_definition) {
                (Some(name), Some(definition)) => {
                    format!("ALTER TABLE {schema}.{table} ADD CONSTRAINT \"{name}\" {definition}")
                }
                _ => {
                    let on = format!(" ON {quoted_schema}.{quoted_table} ");
                    let only = format!(" ON ONLY {quoted_schema}.{quoted_table} ");
                    let target = format!(" ON {schema}.{quoted_table} ");
                    if indexdef.contains(&on) {
                        indexdef.replacen(&on, &target, 1)
                    } else if indexdef.contains(&only) {
                        indexdef.replacen(&only, &target, 1)
                    } else {
                        bail!("cannot copy index definition {indexdef:?}");
                    }
                }
            };
            sqlx::query(&statement)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("copying an index of {READ_SCHEMA}.{table}: {statement}"))?;
        }
    }
    copy_privileges(&mut tx, schema).await?;
    tx.commit().await?;
    Ok(tables)
}

/// Grants on `read` and its tables, and the tables' owners, carried over to `schema`, so that
/// roles reading the read models (the query API's, in a deployment that separates them) can
/// still read them after a swap.
async fn copy_privileges(tx: &mut PgConnection, schema: &str) -> anyhow::Result<()> {
    // Grants first: once a table belongs to another role, only that role (or a superuser) may
    // grant on it.
    let statements: Vec<String> = sqlx::query_scalar(
        "SELECT statement FROM (
             SELECT 1 AS step, format('GRANT %s ON SCHEMA %I TO %s', a.privilege_type, $2::text,
                    CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END) AS statement
             FROM pg_namespace n, aclexplode(n.nspacl) a
             WHERE n.nspname = $1 AND a.grantee <> n.nspowner
             UNION ALL
             SELECT 2, format('GRANT %s ON TABLE %I.%I TO %s', a.privilege_type, $2::text, c.relname,
                    CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END)
             FROM pg_class c, aclexplode(c.relacl) a
             WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p') AND a.grantee <> c.relowner
             UNION ALL
             SELECT 3, format('ALTER TABLE %I.%I OWNER TO %I', $2::text, c.relname, pg_get_userbyid(c.relowner))
             FROM pg_class c
             WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p')
               AND c.relowner <> current_user::regrole
         ) s ORDER BY step",
    )
    .bind(READ_SCHEMA)
    .bind(schema)
    .fetch_all(&mut *tx)
    .await?;
    for statement in statements {
        sqlx::query(&statement)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("carrying a privilege of {READ_SCHEMA} over: {statement}"))?;
    }
    Ok(())
}

/// A lower-case identifier that needs no quoting in SQL.
pub fn is_plain(name: &str) -> bool {
    name.len() < 64
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// An index of a `read` table, and the constraint it backs, if any.
#[derive(sqlx::FromRow)]
struct IndexDefinition {
    indexdef: String,
    constraint_name: Option<String>,
    constraint_definition: Option<String>,
    /// The table's schema and name as the index definition spells them.
    quoted_schema: String,
    quoted_table: String,
}

/// Drops a shadow or scratch schema and everything in it.
pub async fn drop(pool: &PgPool, schema: &str) -> Result<(), sqlx::Error> {
    debug_assert_ne!(schema, READ_SCHEMA);
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(pool)
        .await?;
    Ok(())
}
