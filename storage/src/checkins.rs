//! Check-ins of netbooted machines: what a machine reported it booted, as `carrier serve`
//! accepted it (refused reports are never stored), and the latest one per machine.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError, now, query};

/// An accepted check-in, as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCheckin {
    pub carrier: String,
    /// The carried profile name on that carrier.
    pub machine: String,
    pub generation: u64,
    pub mac: String,
    pub cmdline: String,
    /// The connection's source address.
    pub source: String,
}

/// A stored check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkin {
    /// RFC 3339 UTC, to the second.
    pub received_at: String,
    pub carrier: String,
    pub machine: String,
    pub generation: u64,
    pub mac: String,
    pub cmdline: String,
    pub source: String,
}

impl Store {
    /// Stores an accepted check-in, received now.
    pub async fn record_checkin(&self, c: &NewCheckin) -> Result<(), StoreError> {
        let generation = i64::try_from(c.generation)
            .map_err(|e| query("recording a check-in")(sqlx::Error::Encode(Box::new(e))))?;
        sqlx::query(
            "INSERT INTO checkins (received_at, carrier, machine, generation, mac, cmdline, \
             source) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(now())
        .bind(&c.carrier)
        .bind(&c.machine)
        .bind(generation)
        .bind(&c.mac)
        .bind(&c.cmdline)
        .bind(&c.source)
        .execute(&self.pool)
        .await
        .map_err(query("recording a check-in"))?;
        Ok(())
    }

    /// The last check-in received from each (carrier, machine), ordered by carrier and
    /// machine. The last received counts, even if it booted an older generation.
    pub async fn latest_checkins(&self) -> Result<Vec<Checkin>, StoreError> {
        let what = "reading check-ins";
        let rows = sqlx::query(
            "SELECT received_at, carrier, machine, generation, mac, cmdline, source \
             FROM checkins WHERE id IN (SELECT MAX(id) FROM checkins GROUP BY carrier, machine) \
             ORDER BY carrier, machine",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query(what))?;
        rows.iter().map(checkin).collect::<Result<_, _>>().map_err(query(what))
    }

    /// How many check-ins were accepted, ever.
    pub async fn checkin_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM checkins")
            .fetch_one(&self.pool)
            .await
            .map_err(query("counting check-ins"))?;
        row.try_get("n").map_err(query("counting check-ins"))
    }
}

fn checkin(row: &AnyRow) -> Result<Checkin, sqlx::Error> {
    let generation: i64 = row.try_get("generation")?;
    Ok(Checkin {
        received_at: row.try_get("received_at")?,
        carrier: row.try_get("carrier")?,
        machine: row.try_get("machine")?,
        generation: u64::try_from(generation).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        mac: row.try_get("mac")?,
        cmdline: row.try_get("cmdline")?,
        source: row.try_get("source")?,
    })
}
