//! The service `sipguard run` is: it attaches (or adopts), tells its supervisor, and serves
//! signals, incident records, route changes, ban sweeps and the fleet's bouncer until told
//! to stop.

pub mod bouncing;
pub mod crowdsec;
pub mod incidents;
pub mod notify;
pub mod pidfile;
pub mod service;
