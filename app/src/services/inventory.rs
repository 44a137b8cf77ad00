//! The dashboard's view of the cluster: loads it through carrier-core off the async
//! runtime, serves the loaded cluster for [`REVALIDATE_AFTER`] before looking at the
//! configuration's files again, keeps a durable record of every evaluation (when Nix ran
//! or failed), and answers the read pages (machines, one machine, carriers) for a caller.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carrier_core::auth::Action;
use carrier_core::cluster::{Inventory, InventoryError, LoadOutcome, Loaded, Selection};
use carrier_core::conf_dir::ConfDir;
use carrier_storage::Store;

use super::{Caller, views};
use crate::error::AppError;
use crate::model::{
    CarrierView, InventoryInfo, MachineDetail, MachineList, MachineQuery, PER_PAGE, page_count,
};

/// How long a load is served before the configuration's files are hashed again: a
/// changed file is seen by the first request after this much time (docs/web.md,
/// "Caching").
pub const REVALIDATE_AFTER: Duration = Duration::from_secs(1);

pub struct InventoryService {
    inventory: Arc<Inventory>,
    conf_dir: ConfDir,
    db: Store,
    recorded: Mutex<Option<String>>,
    /// The last load (a cluster or the error to show) and when the files were hashed.
    current: Mutex<Option<(Result<Loaded, AppError>, Instant)>>,
    /// Held while the files are hashed again: concurrent requests wait for one look.
    revalidating: tokio::sync::Mutex<()>,
    /// When the current content key last evaluated, as the store says (per content key).
    evaluated_at: Mutex<Option<(String, Option<String>)>>,
}

impl InventoryService {
    pub fn new(inventory: Inventory, conf_dir: ConfDir, db: Store) -> Self {
        InventoryService {
            inventory: Arc::new(inventory),
            conf_dir,
            db,
            recorded: Mutex::new(None),
            current: Mutex::new(None),
            revalidating: tokio::sync::Mutex::new(()),
            evaluated_at: Mutex::new(None),
        }
    }

    pub fn conf_dir(&self) -> &ConfDir {
        &self.conf_dir
    }

    /// The current cluster, as hashed at most [`REVALIDATE_AFTER`] ago; Nix runs only
    /// when a configuration file changed. A configuration that does not evaluate is
    /// remembered by content key like one that does, so requests do not run Nix again
    /// until a file changes.
    pub async fn load(&self) -> Result<Loaded, AppError> {
        if let Some(current) = self.fresh() {
            return current;
        }
        let _one = self.revalidating.lock().await;
        if let Some(current) = self.fresh() {
            return current;
        }
        let loaded = self.revalidate().await;
        *self.current.lock().unwrap() = Some((loaded.clone(), Instant::now()));
        loaded
    }

    fn fresh(&self) -> Option<Result<Loaded, AppError>> {
        match &*self.current.lock().unwrap() {
            Some((loaded, at)) if at.elapsed() < REVALIDATE_AFTER => Some(loaded.clone()),
            _ => None,
        }
    }

    /// Hashes the files again (through the core's remembered hashes) and evaluates when
    /// they changed; records each new content key's evaluation once.
    async fn revalidate(&self) -> Result<Loaded, AppError> {
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
        let known = match &*self.evaluated_at.lock().unwrap() {
            Some((key, at)) if *key == loaded.key => Some(at.clone()),
            _ => None,
        };
        let evaluated_at = match known {
            Some(at) => at,
            None => {
                // recorded by `load` before it returned: stays as read for this content key
                let at = self.db.last_evaluation(&loaded.key).await.map_err(|e| {
                    tracing::error!("{e}");
                    AppError::Internal
                })?;
                *self.evaluated_at.lock().unwrap() = Some((loaded.key.clone(), at.clone()));
                at
            }
        };
        Ok(InventoryInfo {
            machines: loaded.cluster.machines.len(),
            carriers: loaded.cluster.carriers().count(),
            evaluated_at,
            content_key: loaded.key[..12].to_string(),
        })
    }

    /// One page of the machines `query` selects (the selection of `carrier ls`), if the
    /// caller may view every machine it selects.
    pub async fn machines(
        &self,
        caller: &Caller,
        query: &MachineQuery,
    ) -> Result<MachineList, AppError> {
        let selection = Selection::parse(
            Some(query.pattern.as_str()),
            &query.tag_list(),
            &query.attr_list(),
            Some(query.managed_or_default()),
        )
        .map_err(|e| AppError::BadInput(e.to_string()))?;
        let page = query.page_number().map_err(AppError::BadInput)?;
        let loaded = self.load().await?;
        let selected =
            selection.select(&loaded.cluster).map_err(|e| AppError::BadInput(e.to_string()))?;
        // the caller's rights over exactly the machines this request resolved to
        caller.check(Action::View, &selected, &loaded.cluster)?;
        let pages = page_count(selected.len());
        if page > pages {
            return Err(AppError::BadInput(format!(
                "invalid page '{page}': the selected machines fill {pages} page(s)"
            )));
        }
        Ok(MachineList {
            machines: selected
                .iter()
                .skip((page - 1) * PER_PAGE)
                .take(PER_PAGE)
                .map(|m| views::summary(m))
                .collect(),
            total: loaded.cluster.machines.len(),
            matched: selected.len(),
            page,
            pages,
        })
    }

    /// One machine with every option, if the caller may view it.
    pub async fn machine(&self, caller: &Caller, name: &str) -> Result<MachineDetail, AppError> {
        let loaded = self.load().await?;
        let machine = loaded.cluster.get(name).ok_or_else(|| {
            AppError::NotFound(format!("no machine named '{name}' in the cluster"))
        })?;
        caller.check(Action::View, &[machine], &loaded.cluster)?;
        Ok(views::detail(&loaded.cluster, machine, self))
    }

    /// Every carrier with its carried machines.
    pub async fn carriers(&self) -> Result<Vec<CarrierView>, AppError> {
        let loaded = self.load().await?;
        Ok(loaded.cluster.carriers().map(|c| views::carrier(&loaded.cluster, c)).collect())
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
