//! A ClickHouse database of one test's own.

use uuid::Uuid;

/// A ClickHouse database of one test's own (`test_<uuid>`), migrated as the projector migrates
/// its own; dropped on drop.
pub struct ScratchDatabase {
    pub name: String,
}

impl ScratchDatabase {
    pub async fn create() -> Self {
        let db = Self {
            name: format!("test_{}", Uuid::new_v4().simple()),
        };
        projector::clickhouse_sink::ClickHouseSink::migrate(&crate::clickhouse_url(), &db.name)
            .await
            .expect("ClickHouse answers and migrates");
        db
    }

    pub fn client(&self) -> clickhouse::Client {
        service::clickhouse::client(&crate::clickhouse_url(), &self.name)
    }
}

impl Drop for ScratchDatabase {
    /// Drop cannot await, and the test's runtime may be shutting down: the database is dropped
    /// from a thread with a runtime of its own, waited for so that no test leaves one behind.
    fn drop(&mut self) {
        let admin = service::clickhouse::client(&crate::clickhouse_url(), "default");
        let query = format!("DROP DATABASE IF EXISTS {}", self.name);
        let dropping = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(runtime) = runtime {
                let _ = runtime.block_on(admin.query(&query).execute());
            }
        });
        let _ = dropping.join();
    }
}
