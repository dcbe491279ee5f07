//! Synthetic Taobao-format event logs with a planted purchase signal, so that the
//! purchase-intent model has something real to find at any scale (`shopnet synth events`).
//!
//! Each user browses for eight days before the cut (2017-12-02 16:00 UTC, the Taobao
//! log's last day starting in Beijing time) and may buy in the day after it. The planted
//! signal, in the log-odds of buying after the cut:
//!
//! - base rate: `-4.5` (about 1 % of users with no signal buy; about 19 % of all users
//!   buy: most users never do);
//! - every `cart` event adds `5.0 * exp(-age / 18 h)` and every `fav` event adds
//!   `2.5 * exp(-age / 18 h)`, where `age` is the time from the event to the cut:
//!   intent is recent;
//! - but only the `cart` and `fav` events after the user's last `buy`: a purchase
//!   satisfies the intent that led to it;
//! - plus `0.02` per event in the last day before the cut (capped at 20 events): users
//!   active right now buy more.
//!
//! Counting `cart` events sees the first effect but neither recency nor the reset by a
//! purchase, which is the margin a sequence model can win. The generator prints the
//! ROC-AUC of the planted probabilities (the best any model can do) and of the cart count.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::base::files::PendingFile;
use crate::base::metrics;
use crate::data::events::Behavior;

/// 2017-11-24 16:00:00 UTC: the first day of the Taobao log in Beijing time.
pub const START: i64 = 1_511_539_200;
const DAY: i64 = 86_400;
const HISTORY_DAYS: i64 = 8;
/// Where history ends and the one-day label window starts.
pub const CUT: i64 = START + HISTORY_DAYS * DAY;
const CATEGORIES: u64 = 200;
const ITEMS_PER_CATEGORY: u64 = 1_000;
const MEAN_EVENTS: f64 = 50.0;
const MAX_EVENTS: usize = 500;

/// What a generated log holds, for the report.
pub struct SynthSummary {
    pub users: usize,
    pub events: u64,
    pub buyers: usize,
    pub oracle_roc_auc: Option<f64>,
    pub cart_count_roc_auc: Option<f64>,
}

/// Writes a header-less log of `users` users (ids 1..=users), grouped by user and in
/// time order within a user, as the public Taobao file is.
pub fn write_events(users: usize, seed: u64, out: &Path) -> Result<SynthSummary> {
    if users == 0 {
        bail!("--users: must be at least 1");
    }
    // Three numbers per user are kept for the summary's ROC-AUCs.
    crate::base::memory::ensure_fits(
        &format!("--users {users}"),
        (users as u128).saturating_mul(16),
    )?;
    let mut writer = PendingFile::create(out)?;
    let (mut probabilities, mut labels, mut carts) =
        (Vec::with_capacity(users), Vec::with_capacity(users), Vec::with_capacity(users));
    let mut events = 0u64;
    for user in 1..=users as u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ user);
        let generated = User::generate(&mut rng);
        for event in &generated.events {
            let item =
                event.category * ITEMS_PER_CATEGORY + rng.random_range(0..ITEMS_PER_CATEGORY) + 1;
            writeln!(
                writer,
                "{user},{item},{},{},{}",
                event.category,
                event.behavior.name(),
                event.timestamp
            )
            .with_context(|| format!("{}: cannot write", out.display()))?;
        }
        events += generated.events.len() as u64;
        probabilities.push(generated.probability as f32);
        labels.push(generated.bought);
        carts.push(generated.carts as f32);
    }
    writer.commit()?;
    Ok(SynthSummary {
        users,
        events,
        buyers: labels.iter().filter(|&&l| l).count(),
        oracle_roc_auc: metrics::roc_auc(&probabilities, &labels),
        cart_count_roc_auc: metrics::roc_auc(&carts, &labels),
    })
}

struct SynthEvent {
    category: u64,
    behavior: Behavior,
    timestamp: i64,
}

struct User {
    events: Vec<SynthEvent>,
    probability: f64,
    bought: bool,
    carts: usize,
}

impl User {
    fn generate(rng: &mut ChaCha8Rng) -> Self {
        // Popular categories are drawn more often (density falling with the id).
        let popular =
            |rng: &mut ChaCha8Rng| (CATEGORIES as f64 * rng.random::<f64>().powi(2)) as u64;
        let favourites: Vec<u64> = (0..3).map(|_| popular(rng)).collect();
        let count =
            (5 + (-(1.0 - rng.random::<f64>()).ln() * MEAN_EVENTS) as usize).min(MAX_EVENTS);
        let mut times: Vec<i64> =
            (0..count).map(|_| START + rng.random_range(0..HISTORY_DAYS * DAY)).collect();
        times.sort_unstable();
        let mut events: Vec<SynthEvent> = times
            .into_iter()
            .map(|timestamp| {
                let category = if rng.random_bool(0.7) {
                    favourites[rng.random_range(0..favourites.len())]
                } else {
                    popular(rng)
                };
                let draw: f64 = rng.random();
                let behavior = match draw {
                    d if d < 0.04 => Behavior::Fav,
                    d if d < 0.11 => Behavior::Cart,
                    d if d < 0.13 => Behavior::Buy,
                    _ => Behavior::Pv,
                };
                SynthEvent { category, behavior, timestamp }
            })
            .collect();

        let probability = planted_probability(&events);
        let bought = rng.random_bool(probability);
        let carts = events.iter().filter(|e| e.behavior == Behavior::Cart).count();
        let last_cart =
            events.iter().rev().find(|e| e.behavior == Behavior::Cart).map(|e| e.category);
        let window_events = if bought {
            rng.random_range(1..=4)
        } else if rng.random_bool(0.6) {
            rng.random_range(1..=5)
        } else {
            0
        };
        let mut window_times: Vec<i64> =
            (0..window_events).map(|_| CUT + rng.random_range(0..DAY)).collect();
        window_times.sort_unstable();
        for (i, timestamp) in window_times.iter().copied().enumerate() {
            let buys_now = bought && i + 1 == window_events;
            let category = match (buys_now, last_cart) {
                (true, Some(category)) => category,
                _ => favourites[rng.random_range(0..favourites.len())],
            };
            events.push(SynthEvent {
                category,
                behavior: if buys_now { Behavior::Buy } else { Behavior::Pv },
                timestamp,
            });
        }
        Self { events, probability, bought, carts }
    }
}

/// The planted probability of buying after the cut, from the history (module docs).
fn planted_probability(history: &[SynthEvent]) -> f64 {
    let last_buy = history
        .iter()
        .rev()
        .find(|e| e.behavior == Behavior::Buy)
        .map_or(i64::MIN, |e| e.timestamp);
    let mut log_odds = -4.5;
    for event in history.iter().filter(|e| e.timestamp > last_buy) {
        let weight = match event.behavior {
            Behavior::Cart => 5.0,
            Behavior::Fav => 2.5,
            _ => continue,
        };
        log_odds += weight * (-((CUT - event.timestamp) as f64) / (0.75 * DAY as f64)).exp();
    }
    let active_now = history.iter().filter(|e| CUT - e.timestamp <= DAY).count().min(20);
    log_odds += 0.02 * active_now as f64;
    1.0 / (1.0 + (-log_odds).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(behavior: Behavior, hours_before_cut: i64) -> SynthEvent {
        SynthEvent { category: 1, behavior, timestamp: CUT - hours_before_cut * 3600 }
    }

    #[test]
    fn planted_probability_by_hand() {
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        // A cart 18 h before the cut (weight 5 e^-1), a pv 2 h before (active now).
        let p = planted_probability(&[event(Behavior::Cart, 18), event(Behavior::Pv, 2)]);
        assert!((p - sigmoid(-4.5 + 5.0 * (-1f64).exp() + 2.0 * 0.02)).abs() < 1e-12, "{p}");
        // The same cart followed by a buy: the cart no longer counts.
        let p = planted_probability(&[event(Behavior::Cart, 18), event(Behavior::Buy, 10)]);
        assert!((p - sigmoid(-4.5 + 2.0 * 0.02)).abs() < 1e-12, "{p}");
    }

    #[test]
    fn logs_are_reproducible_and_plant_a_signal_counting_carts_misses() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
        let summary = write_events(3_000, 7, &a).unwrap();
        write_events(3_000, 7, &b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let buyer_share = summary.buyers as f64 / summary.users as f64;
        assert!((0.1..0.3).contains(&buyer_share), "{buyer_share}");
        let (oracle, carts) =
            (summary.oracle_roc_auc.unwrap(), summary.cart_count_roc_auc.unwrap());
        assert!(oracle > carts + 0.05, "oracle {oracle}, cart count {carts}");
    }
}
