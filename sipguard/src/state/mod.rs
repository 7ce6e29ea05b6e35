//! The pinned state as the product sees it: source lists, protected destinations and their
//! policies, SIP domains, bans, signatures, the fleet's decisions, the route mirror, and the
//! pin layout's upgrades. Every write goes through one journaled `change::Change`.

pub mod bans;
pub mod change;
pub mod decisions;
pub mod destinations;
pub mod domains;
pub mod lists;
pub mod protect;
pub mod routes;
pub mod sigset;
pub mod upgrade;
