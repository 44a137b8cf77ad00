//! Which generations `carrier generation rm` removes (spec 4.3): the selector's grammar
//! and its application to one machine's generations. Pure: the caller passes the clock.

use std::str::FromStr;

use super::{GenerationError, Record};

const DAY: i64 = 24 * 60 * 60;

/// A parsed generation selector.
#[derive(Debug, Clone)]
pub enum Selector {
    /// `0` the newest, `k` the k-th oldest, `-k` the (k+1)-th newest (spec 4.1).
    Offset(i64),
    /// `old`: every generation but the current one.
    Old,
    /// `Nd`: generations older than N days.
    OlderThanDays(u64),
    /// `+N`: all but the newest N (nix-env's `+N`).
    KeepLast(u64),
    /// Anything else: a generation name or a glob over names.
    Name { pattern: String, glob: globset::GlobMatcher },
}

impl FromStr for Selector {
    type Err = GenerationError;

    fn from_str(s: &str) -> Result<Self, GenerationError> {
        let bad = |reason: &str| GenerationError::Selector {
            selector: s.to_string(),
            reason: reason.to_string(),
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        let number = |t: &str| t.parse::<u64>().map_err(|_| bad("the number is too large"));
        if s == "old" {
            return Ok(Selector::Old);
        }
        if let Some(n) = s.strip_suffix('d').filter(|n| digits(n)) {
            return Ok(Selector::OlderThanDays(number(n)?));
        }
        if let Some(n) = s.strip_prefix('+') {
            if !digits(n) {
                return Err(bad("`+` must be followed by a number of generations to keep"));
            }
            return match number(n)? {
                0 => Err(bad("`+0` would keep nothing; use `old`")),
                n => Ok(Selector::KeepLast(n)),
            };
        }
        if digits(s.strip_prefix('-').unwrap_or(s)) {
            return s.parse().map(Selector::Offset).map_err(|_| bad("the offset is too large"));
        }
        if s.is_empty() || s.starts_with('-') {
            return Err(bad("expected a number, `old`, `Nd`, `+N` or a generation name or glob"));
        }
        // `3x`, `10days`: a typo of a count, not a name (names have dashes)
        let glob_chars = ['*', '?', '[', '{'];
        if s.starts_with(|c: char| c.is_ascii_digit())
            && !s.contains('-')
            && !s.contains(glob_chars)
        {
            return Err(bad(
                "neither a number nor `Nd`, and generation names look like YYYY-MM-DD--HH-MM-SS",
            ));
        }
        if s.contains('/') || s.chars().any(char::is_whitespace) {
            return Err(bad("generation names contain no `/` and no white space"));
        }
        let glob = globset::GlobBuilder::new(s)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| bad(&format!("not a valid glob: {}", e.kind())))?;
        Ok(Selector::Name { pattern: s.to_string(), glob: glob.compile_matcher() })
    }
}

impl Selector {
    /// Whether the selector names generations one by one (an offset or an exact name),
    /// so that hitting the current generation is an error rather than a skip.
    pub fn is_explicit(&self) -> bool {
        match self {
            Selector::Offset(_) => true,
            Selector::Name { pattern, .. } => !pattern.contains(['*', '?', '[', '{']),
            _ => false,
        }
    }

    /// The generations of one machine (oldest first) this selector names, as indices;
    /// the current one too, except for `old` (what `generation ls` shows).
    pub fn matches(&self, gens: &[Record], now: jiff::Timestamp) -> Vec<usize> {
        match self {
            Selector::Offset(k) => offset(gens.len(), *k).into_iter().collect(),
            Selector::Old => (0..gens.len()).filter(|&i| !gens[i].is_current()).collect(),
            Selector::OlderThanDays(n) => {
                let secs = i64::try_from(*n).unwrap_or(i64::MAX / DAY).saturating_mul(DAY);
                let limit = now.as_second().saturating_sub(secs);
                (0..gens.len()).filter(|&i| gens[i].date.as_second() < limit).collect()
            }
            Selector::KeepLast(n) => {
                let keep = usize::try_from(*n).unwrap_or(usize::MAX);
                (0..gens.len().saturating_sub(keep)).collect()
            }
            Selector::Name { glob, .. } => {
                (0..gens.len()).filter(|&i| glob.is_match(&gens[i].name)).collect()
            }
        }
    }

    /// The generations of one machine (oldest first) this selector picks for removal,
    /// as indices. The current generation is never picked: an explicit selector that
    /// names it is an error, the others pass over it.
    pub fn select(
        &self,
        gens: &[Record],
        now: jiff::Timestamp,
    ) -> Result<Vec<usize>, GenerationError> {
        let picked = self.matches(gens, now);
        if self.is_explicit()
            && let Some(&i) = picked.iter().find(|&&i| gens[i].is_current())
        {
            return Err(GenerationError::Current {
                machine: gens[i].machine.clone(),
                name: gens[i].name.clone(),
            });
        }
        Ok(picked.into_iter().filter(|&i| !gens[i].is_current()).collect())
    }
}

/// Spec 4.1's offsets over `len` generations, oldest first.
pub fn offset(len: usize, k: i64) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let idx = match k {
        0 => len - 1,
        k if k > 0 => k - 1,
        k => len - 1 + k,
    };
    usize::try_from(idx).ok().filter(|&i| (i as i64) < len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::tests::record;

    fn sel(s: &str) -> Selector {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        s.parse::<Selector>().unwrap_err().to_string()
    }

    /// Four generations a day apart, the last one 1 day old; the third is current.
    fn gens() -> Vec<Record> {
        (0..4).map(|i| record("m", i + 1, 4 - i as i64, i == 2)).collect()
    }

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::from_second(100 * DAY).unwrap()
    }

    fn picked(s: &str) -> Vec<usize> {
        sel(s).select(&gens(), now()).unwrap()
    }

    #[test]
    fn grammar() {
        assert!(matches!(sel("old"), Selector::Old));
        assert!(matches!(sel("7d"), Selector::OlderThanDays(7)));
        assert!(matches!(sel("+3"), Selector::KeepLast(3)));
        assert!(matches!(sel("-2"), Selector::Offset(-2)));
        assert!(matches!(sel("0"), Selector::Offset(0)));
        assert!(matches!(sel("2026-01-*"), Selector::Name { .. }));
        assert!(matches!(sel("d"), Selector::Name { .. }), "a name, not a day count");
        assert!(sel("2026-01-01--00-00-00").is_explicit());
        assert!(!sel("2026-*").is_explicit());
    }

    #[test]
    fn malformed_selectors_are_named() {
        assert_eq!(
            err("+x"),
            "invalid generation selector '+x': `+` must be followed by a number of generations to keep"
        );
        assert!(err("+0").contains("'+0'"));
        assert!(err("-x").starts_with("invalid generation selector '-x': expected a number"));
        assert!(err("").contains("''"));
        assert!(err("a[").starts_with("invalid generation selector 'a[': not a valid glob"));
        assert!(err("a/b").contains("no `/`"));
        assert!(err("99999999999999999999").contains("too large"));
        assert_eq!(
            err("3x"),
            "invalid generation selector '3x': neither a number nor `Nd`, and generation names look like YYYY-MM-DD--HH-MM-SS"
        );
        assert!(err("10days").contains("'10days'"));
    }

    #[test]
    fn selection_never_takes_the_current_one() {
        assert_eq!(picked("old"), [0, 1, 3]);
        assert_eq!(picked("+1"), [0, 1], "the newest kept, the current skipped");
        assert_eq!(picked("+10"), Vec::<usize>::new());
        assert_eq!(picked("2d"), [0, 1], "older than 2 days: 4 and 3 days old");
        assert_eq!(picked("1"), [0]);
        assert_eq!(picked("0"), [3]);
        assert_eq!(picked("-2"), [1]);
        assert_eq!(picked("9"), Vec::<usize>::new());
        assert_eq!(picked("g*"), [0, 1, 3]);
        assert_eq!(picked("g1"), [0]);
        assert_eq!(
            sel("g*").matches(&gens(), now()),
            [0, 1, 2, 3],
            "listing shows the current one"
        );
        assert_eq!(sel("old").matches(&gens(), now()), [0, 1, 3]);
    }

    #[test]
    fn naming_the_current_one_is_refused() {
        let e = sel("-1").select(&gens(), now()).unwrap_err().to_string();
        assert_eq!(e, "generation g3 of m is the current one: it is never removed");
        let e = sel("g3").select(&gens(), now()).unwrap_err().to_string();
        assert!(e.contains("g3 of m is the current one"), "{e}");
    }

    #[test]
    fn offsets() {
        assert_eq!(offset(3, 0), Some(2));
        assert_eq!(offset(3, 1), Some(0));
        assert_eq!(offset(3, 3), Some(2));
        assert_eq!(offset(3, 4), None);
        assert_eq!(offset(3, -2), Some(0));
        assert_eq!(offset(3, -3), None);
        assert_eq!(offset(0, 0), None);
    }
}
