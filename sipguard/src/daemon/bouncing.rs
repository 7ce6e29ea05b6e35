//! The bouncer task of `run`: started, restarted or stopped to follow the settings, in two
//! steps so that a reload checks the new bouncer before it changes anything.

use anyhow::Context as _;

use super::crowdsec::{Bouncer, Outbox};
use crate::{
    kernel::maps::PinnedMaps, setup::settings::CrowdsecSettings, state::decisions::DecisionList,
};

/// The running bouncer, if any.
#[derive(Default)]
pub struct Bouncing {
    settings: Option<CrowdsecSettings>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Where incident records go to be shared, when the bouncer shares bans.
    outbox: Option<Outbox>,
}

/// A change of bouncer, checked and built but not yet made.
pub enum Prepared {
    /// The settings did not change: the bouncer runs on.
    Unchanged,
    /// Start this bouncer, stopping the one before.
    Start(Box<Bouncer>, CrowdsecSettings),
    /// Stop the bouncer, and empty the decision list: decisions are enforced only while a
    /// bouncer is configured.
    Stop,
}

impl Bouncing {
    /// Checks `wanted` and builds its bouncer (its files read, its client made); changes
    /// nothing.
    pub fn prepare(
        &self,
        maps: &PinnedMaps,
        wanted: Option<CrowdsecSettings>,
    ) -> anyhow::Result<Prepared> {
        if self.task.is_some() && wanted == self.settings {
            return Ok(Prepared::Unchanged);
        }
        Ok(match wanted {
            Some(s) => Prepared::Start(Box::new(Bouncer::new(maps, &s)?), s),
            None => Prepared::Stop,
        })
    }

    /// Makes a prepared change. Only emptying the decision list can fail, and then the old
    /// bouncer is already stopped.
    pub fn commit(&mut self, maps: &PinnedMaps, prepared: Prepared) -> anyhow::Result<()> {
        let (bouncer, settings) = match prepared {
            Prepared::Unchanged => return Ok(()),
            Prepared::Start(b, s) => (Some(b), Some(s)),
            Prepared::Stop => (None, None),
        };
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.outbox = None;
        self.settings = settings;
        let Some(b) = bouncer else {
            return DecisionList::open(maps)?.replace(&[]).context("clearing the decisions");
        };
        log::info!(
            "crowdsec: enforcing the decisions of {} every {}s{}",
            b.settings().url,
            b.settings().interval,
            if b.shares() { "; sharing verified bans" } else { "" }
        );
        let records = b.outbox().map(|(outbox, rx)| {
            let lost = outbox.lost();
            self.outbox = Some(outbox);
            (lost, rx)
        });
        self.task = Some(tokio::spawn(b.run(records)));
        Ok(())
    }

    /// Prepares and commits at once (at start, where nothing runs yet).
    pub fn follow(
        &mut self,
        maps: &PinnedMaps,
        wanted: Option<CrowdsecSettings>,
    ) -> anyhow::Result<()> {
        let prepared = self.prepare(maps, wanted)?;
        self.commit(maps, prepared)
    }

    /// Where incident records go to be shared, if the bouncer shares.
    #[must_use]
    pub fn outbox(&self) -> Option<&Outbox> {
        self.outbox.as_ref()
    }
}
