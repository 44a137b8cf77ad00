//! `carrier generation rotate`'s retention rules (spec 4.4): `min`/`max`/`maxAge` per
//! machine, falling back to the configuration's `confctl.*` settings. Pure.

use crate::conf_dir::ConfDir;
use std::path::Path;

use super::GenerationError;
use crate::cluster::{GenerationLimits, HostGenerationLimits, Machine};

/// Resolved limits for one machine and one kind of generations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Never go below this many generations.
    pub min: i64,
    /// Remove the oldest ones above this many.
    pub max: i64,
    /// Seconds: remove generations older than this (down to `min`).
    pub max_age: i64,
}

impl Default for Limits {
    /// Upstream's defaults: 5, 30 and 180 days.
    fn default() -> Self {
        Limits { min: 5, max: 30, max_age: 180 * 24 * 60 * 60 }
    }
}

impl Limits {
    /// The machine's values where set, `global`'s otherwise.
    pub fn merged(own: &GenerationLimits, global: Limits) -> Limits {
        Limits {
            min: own.min.unwrap_or(global.min),
            max: own.max.unwrap_or(global.max),
            max_age: own.max_age.unwrap_or(global.max_age),
        }
    }
}

/// The configuration-wide settings rotation and garbage collection read (upstream's
/// `confctl.buildGenerations`, `confctl.hostGenerations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub build_generations: Limits,
    pub host_generations: Limits,
    /// `confctl.hostGenerations.collectGarbage`.
    pub collect_garbage: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            build_generations: Limits::default(),
            host_generations: Limits::default(),
            collect_garbage: true,
        }
    }
}

impl Settings {
    /// Evaluates the configuration's settings: upstream's defaults, overridden by
    /// `<conf_dir>/configs/confctl.nix` where it exists.
    pub fn load(conf_dir: &ConfDir, cache_dir: &Path) -> Result<Settings, GenerationError> {
        let all = crate::settings::ConfctlSettings::load(conf_dir, cache_dir)
            .map_err(|e| GenerationError::Settings { conf_dir: e.conf_dir, source: e.source })?;
        Ok(all.generations)
    }

    pub fn build_limits(&self, m: &Machine) -> Limits {
        Limits::merged(&m.meta_config.build_generations, self.build_generations)
    }

    pub fn host_limits(&self, m: &Machine) -> Limits {
        let HostGenerationLimits { min, max, max_age, .. } = m.meta_config.host_generations;
        Limits::merged(&GenerationLimits { min, max, max_age }, self.host_generations)
    }

    /// Whether rotation collects garbage on `host_machine` (the machine itself, or the
    /// carrier of a carried one): its own `hostGenerations.collectGarbage` where set
    /// (upstream never reads it, quirk 18), the global setting otherwise.
    pub fn collects_garbage(&self, host_machine: &Machine) -> bool {
        host_machine.meta_config.host_generations.collect_garbage.unwrap_or(self.collect_garbage)
    }
}

/// Which of one machine's generations (oldest first: `(date, current)`) rotation
/// removes, as indices: none while at most `min` exist; otherwise, from the oldest and
/// passing over the current one, each while more than `max` remain or that is older
/// than `max_age`, stopping once only `min` remain.
pub fn rotate(
    gens: &[(jiff::Timestamp, bool)],
    limits: Limits,
    now: jiff::Timestamp,
) -> Vec<usize> {
    let count = gens.len() as i64;
    let mut out = Vec::new();
    if count <= limits.min {
        return out;
    }
    let oldest_kept = now.as_second().saturating_sub(limits.max_age);
    for (i, (date, current)) in gens.iter().enumerate() {
        if *current {
            continue;
        }
        let left = count - out.len() as i64;
        if left > limits.max || date.as_second() < oldest_kept {
            out.push(i);
        }
        if count - (out.len() as i64) <= limits.min {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 60 * 60;

    fn ts(days: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(days * DAY).unwrap()
    }

    /// `n` generations one day apart ending today (day 1000), current at `current`.
    fn gens(n: i64, current: Option<usize>) -> Vec<(jiff::Timestamp, bool)> {
        (0..n).map(|i| (ts(1000 - (n - 1 - i)), Some(i as usize) == current)).collect()
    }

    fn limits(min: i64, max: i64, max_age_days: i64) -> Limits {
        Limits { min, max, max_age: max_age_days * DAY }
    }

    #[test]
    fn at_most_min_nothing_goes() {
        assert!(rotate(&gens(5, None), limits(5, 1, 0), ts(1000)).is_empty());
    }

    #[test]
    fn above_max_the_oldest_go() {
        assert_eq!(rotate(&gens(6, Some(5)), limits(1, 4, 365), ts(1000)), [0, 1]);
    }

    #[test]
    fn too_old_ones_go_down_to_min() {
        // ages 9..0 days; older than 3 days: ages 9..4 (indices 0..=5), min 7 stops at 3
        assert_eq!(rotate(&gens(10, Some(9)), limits(7, 30, 3), ts(1000)), [0, 1, 2]);
        assert_eq!(rotate(&gens(10, Some(9)), limits(2, 30, 3), ts(1000)), [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn the_current_one_is_kept_even_when_oldest() {
        assert_eq!(rotate(&gens(4, Some(0)), limits(1, 2, 365), ts(1000)), [1, 2]);
        assert_eq!(rotate(&gens(3, Some(0)), limits(0, 0, 0), ts(1000)), [1, 2]);
    }

    #[test]
    fn machine_values_win_over_global_ones() {
        let own = GenerationLimits { min: Some(1), max: None, max_age: Some(60) };
        assert_eq!(
            Limits::merged(&own, Limits::default()),
            Limits { min: 1, max: 30, max_age: 60 }
        );
        assert_eq!(Limits::default(), limits(5, 30, 180));
    }
}
