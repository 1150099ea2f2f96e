//! Generated names for services created without `--name`, Docker style.

use rand::seq::IndexedRandom;

const ADJECTIVES: &[&str] = &[
    "admiring", "bold", "brave", "calm", "clever", "eager", "festive", "gentle", "happy", "keen",
    "lucid", "nifty", "quirky", "serene", "sharp", "stoic", "tender", "vigilant", "wizardly",
    "zen",
];
const SURNAMES: &[&str] = &[
    "babbage", "curie", "dijkstra", "einstein", "hopper", "knuth", "lamport", "liskov", "lovelace",
    "morse", "noether", "ritchie", "shannon", "thompson", "torvalds", "turing", "wozniak",
];

/// A name such as `vigilant_morse`.
pub fn random_service_name() -> String {
    let mut rng = rand::rng();
    let adjective = ADJECTIVES.choose(&mut rng).copied().unwrap_or("calm");
    let surname = SURNAMES.choose(&mut rng).copied().unwrap_or("lamport");
    format!("{adjective}_{surname}")
}
