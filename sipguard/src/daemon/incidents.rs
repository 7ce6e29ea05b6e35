//! Where `run` puts incident records: standard output, the events file, and the bouncer's
//! outbox for sharing. Records go out whole, one JSON line each, between batches.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use serde_json::Value;

use super::crowdsec::Outbox;

/// The outputs of incident records.
pub struct Incidents {
    stdout: Box<dyn Write + Send>,
    file: Option<std::fs::File>,
    path: Option<PathBuf>,
}

fn open(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the events file {}", path.display()))
}

impl Incidents {
    /// Records go to `stdout`, and are appended to the file at `path` if one is given (made
    /// if missing).
    pub fn open(stdout: Box<dyn Write + Send>, path: Option<PathBuf>) -> anyhow::Result<Self> {
        let file = path.as_deref().map(open).transpose()?;
        Ok(Self { stdout, file, path })
    }

    /// Writes one batch of records, and offers each to the bouncer for sharing.
    pub fn record(&mut self, batch: Vec<Value>, outbox: Option<&Outbox>) -> anyhow::Result<()> {
        for record in batch {
            if let Some(outbox) = outbox {
                outbox.offer(&record);
            }
            let line = format!("{record}\n");
            self.stdout.write_all(line.as_bytes()).context("writing an incident record")?;
            if let Some(f) = self.file.as_mut() {
                f.write_all(line.as_bytes()).context("appending to the events file")?;
            }
        }
        self.stdout.flush().context("writing an incident record")
    }

    /// SIGUSR1 (logrotate's postrotate) or a reload: the events file is opened again by its
    /// name. Records go whole to the old file or the new one, never to both, and none is
    /// lost: they are written between batches, by this one task. On failure the old file
    /// stays in use.
    pub fn reopen(&mut self) {
        let Some(path) = &self.path else { return };
        match open(path) {
            Ok(f) => {
                self.file = Some(f);
                log::info!("reopened the events file {}", path.display());
            }
            Err(e) => log::error!("{e:#}; still writing to the file opened before"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A standard output the test can read.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn records(range: std::ops::Range<u32>) -> Vec<Value> {
        range.map(|n| serde_json::json!({"type": "incident", "n": n})).collect()
    }

    #[test]
    fn a_rotated_file_gets_the_records_after_the_reopen_and_none_is_lost() {
        let dir = std::env::temp_dir().join(format!("sg-incidents-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let stdout = Shared::default();
        let mut incidents = Incidents::open(Box::new(stdout.clone()), Some(path.clone())).unwrap();
        incidents.record(records(0..3), None).unwrap();
        std::fs::rename(&path, dir.join("events.jsonl.1")).unwrap();
        incidents.record(records(3..5), None).unwrap();
        incidents.reopen();
        incidents.record(records(5..6), None).unwrap();

        let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
        assert_eq!(lines(&dir.join("events.jsonl.1")), 5, "before the reopen: the old file");
        assert_eq!(lines(&path), 1, "after it: the new one");
        let printed = String::from_utf8(stdout.0.lock().unwrap().clone()).unwrap();
        let ns: Vec<u64> = printed
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["n"].as_u64().unwrap())
            .collect();
        assert_eq!(ns, (0..6).collect::<Vec<_>>(), "every record, whole and in order");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_reopen_keeps_the_old_file() {
        let dir = std::env::temp_dir().join(format!("sg-incidents-gone-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let mut incidents = Incidents::open(Box::new(std::io::sink()), Some(path.clone())).unwrap();
        std::fs::rename(&dir, dir.with_extension("moved")).unwrap();
        incidents.reopen();
        incidents.record(records(0..2), None).unwrap();
        let kept = dir.with_extension("moved").join("events.jsonl");
        assert_eq!(std::fs::read_to_string(&kept).unwrap().lines().count(), 2);
        std::fs::remove_dir_all(dir.with_extension("moved")).unwrap();
    }

    #[test]
    fn an_unopenable_file_is_refused_with_its_name() {
        let err = Incidents::open(Box::new(std::io::sink()), Some("/proc/nope/events".into()))
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("opening the events file /proc/nope/events"));
    }
}
