//! The dashboard's view of the cluster: loads it through carrier-core off the async
//! runtime, and keeps a durable record of every evaluation (when Nix ran or failed).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use carrier_core::cluster::{Inventory, InventoryError, LoadOutcome, Loaded};
use carrier_core::conf_dir::ConfDir;
use carrier_storage::Store;

use crate::error::AppError;
use crate::model::InventoryInfo;

pub struct InventoryService {
    inventory: Arc<Inventory>,
    conf_dir: ConfDir,
    db: Store,
    recorded: Mutex<Option<String>>,
}

impl InventoryService {
    pub fn new(inventory: Inventory, conf_dir: ConfDir, db: Store) -> Self {
        InventoryService {
            inventory: Arc::new(inventory),
            conf_dir,
            db,
            recorded: Mutex::new(None),
        }
    }

    pub fn conf_dir(&self) -> &ConfDir {
        &self.conf_dir
    }

    /// The current cluster; Nix runs only when a configuration file changed. A
    /// configuration that does not evaluate is remembered by content key like one that
    /// does, so requests do not run Nix again until a file changes.
    pub async fn load(&self) -> Result<Loaded, AppError> {
        let (inventory, dir) = (self.inventory.clone(), self.conf_dir.clone());
        let started = Instant::now();
        let outcome = tokio::task::spawn_blocking(move || inventory.load_outcome(&dir))
            .await
            .map_err(|e| {
                tracing::error!("inventory task failed: {e}");
                AppError::Internal
            })?;
        let elapsed = started.elapsed().as_millis() as i64;
        let LoadOutcome { key, cached, cluster } = outcome.map_err(|e| {
            tracing::error!("loading the cluster: {e}");
            match e {
                // the operator's own setup; the message holds no path outside it
                InventoryError::MissingClusterDir(_) => AppError::Cluster(self.user_message(&e)),
                _ => AppError::Internal,
            }
        })?;
        // Check and mark in one step: concurrent requests record a key once.
        let is_new = {
            let mut recorded = self.recorded.lock().unwrap();
            let is_new = recorded.as_deref() != Some(key.as_str());
            *recorded = Some(key.clone());
            is_new
        };
        match cluster {
            Ok(cluster) => {
                if is_new {
                    self.record(&key, Some(cluster.machines.len()), elapsed, None).await;
                }
                Ok(Loaded { cluster, key, cached })
            }
            Err(e) => {
                let message = self.user_message(&e);
                if is_new {
                    tracing::warn!("cluster evaluation failed: {e}");
                    self.record(&key, None, elapsed, Some(&message)).await;
                }
                Err(AppError::Cluster(message))
            }
        }
    }

    pub async fn info(&self) -> Result<InventoryInfo, AppError> {
        let loaded = self.load().await?;
        let evaluated_at = self.db.last_evaluation(&loaded.key).await.map_err(|e| {
            tracing::error!("{e}");
            AppError::Internal
        })?;
        Ok(InventoryInfo {
            machines: loaded.cluster.machines.len(),
            carriers: loaded.cluster.carriers().count(),
            evaluated_at,
            content_key: loaded.key[..12].to_string(),
        })
    }

    async fn record(
        &self,
        key: &str,
        machines: Option<usize>,
        duration_ms: i64,
        error: Option<&str>,
    ) {
        let result = self.db.record_evaluation(key, machines, duration_ms, error).await;
        if let Err(e) = result {
            tracing::error!("{e}");
        }
    }

    /// The error as the browser may see it: paths of the configuration directory made
    /// relative, the cache directory (carrier's evaluator lives there) named, not shown.
    pub fn user_message(&self, e: &InventoryError) -> String {
        let dir = self.inventory.cache_dir();
        let cache = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let cache = cache.display().to_string();
        let text = e
            .to_string()
            .replace(&format!("{cache}/"), "<carrier cache>/")
            .replace(&cache, "<carrier cache>");
        self.conf_dir.relative_message(&text)
    }
}
