//! The audit spool: a local, append-only log of audit records between the hook calls and the
//! database, so that a record is never dropped because the database is slow or away.
//!
//! Files in `audit.spool_dir`: segments `audit-<seq>.spool` (at most about 8 MiB each; a new one
//! at every start, so a segment a crashed process left is never appended to again), `cursor`
//! (the position up to which records are in the database) and `lock` (one process per folder).
//! A record on disk is `length (u32 LE) | CRC-32 of the payload (u32 LE) | payload (JSON)`; a
//! record cut short by a crash fails its length or CRC and ends its segment.
//!
//! The appender (a thread of its own) writes what the handlers submit as soon as it arrives,
//! and `fdatasync`s at least every [`SYNC_INTERVAL`]: a `kill -9` loses nothing written (the
//! kernel holds it), a power cut at most the last interval. The drainer reads the segments from
//! the cursor in batches; it never reads past what the appender has written. Writing a record
//! twice stores it once (`store::audit`), so the cursor may lag: after a crash the records
//! after it are written again, harmlessly.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::AuditRecord;

/// A new segment is started past this size.
const SEGMENT_BYTES: u64 = 8 << 20;
/// The appender syncs to disk at least this often while it has unsynced records.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Length and CRC.
const HEADER_BYTES: usize = 8;
/// What the drainer reads at a time.
const READ_BYTES: u64 = 1 << 20;
/// A record larger than this is not one of ours (a corrupt length).
const MAX_RECORD_BYTES: usize = 16 << 20;

/// A place in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("audit.spool_dir {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("audit.spool_dir {0} is in use by another process (one spool folder per process)")]
    InUse(PathBuf),
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_path_buf(), source }
}

/// What the spool holds and has done, shared by the appender, the drainer and `GET /ready`.
#[derive(Debug, Default)]
pub struct SpoolCounts {
    /// Records in the spool not yet in the database.
    pub backlog_records: AtomicU64,
    /// Their bytes on disk.
    pub backlog_bytes: AtomicU64,
    /// Records that could not be written to the spool (a full or failing disk): lost.
    pub lost: AtomicU64,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("audit-{segment:012}.spool"))
}

/// The segments in the folder, oldest first.
fn segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(at(dir))? {
        let name = entry.map_err(at(dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(number) = name.strip_prefix("audit-").and_then(|rest| rest.strip_suffix(".spool"))
            && let Ok(segment) = number.parse::<u64>()
        {
            found.push(segment);
        }
    }
    found.sort_unstable();
    Ok(found)
}

fn read_cursor(dir: &Path) -> Position {
    let text = fs::read_to_string(dir.join("cursor")).unwrap_or_default();
    let mut parts = text.split_whitespace().map(|part| part.parse::<u64>());
    match (parts.next(), parts.next()) {
        (Some(Ok(segment)), Some(Ok(offset))) => Position { segment, offset },
        _ => Position::default(),
    }
}

/// Encodes one record as it is stored.
pub fn encode(record: &AuditRecord, into: &mut Vec<u8>) {
    let payload = serde_json::to_vec(record).unwrap_or_default();
    into.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes());
    into.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    into.extend_from_slice(&payload);
}

/// Decodes the records of `bytes`, stopping at the first that is cut short or corrupt: the
/// records and the bytes they took.
fn decode(bytes: &[u8], max_records: usize) -> (Vec<AuditRecord>, usize) {
    let mut records = Vec::new();
    let mut used = 0;
    while records.len() < max_records && bytes.len() - used >= HEADER_BYTES {
        let header = &bytes[used..used + HEADER_BYTES];
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if length > MAX_RECORD_BYTES || bytes.len() - used - HEADER_BYTES < length {
            break;
        }
        let payload = &bytes[used + HEADER_BYTES..used + HEADER_BYTES + length];
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(record) = serde_json::from_slice::<AuditRecord>(payload) else { break };
        records.push(record);
        used += HEADER_BYTES + length;
    }
    (records, used)
}

/// The spool's folder, locked for this process.
pub struct Spool {
    dir: PathBuf,
    /// Held open: the lock lasts as long as the process (or this value).
    _lock: File,
    pub counts: Arc<SpoolCounts>,
}

impl Spool {
    /// Opens (creating) the folder, takes its lock, and counts what earlier runs left unwritten.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(at(dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(at(dir))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::InUse(dir.to_path_buf())),
            Err(fs::TryLockError::Error(source)) => return Err(SpoolError::Io { path: dir.to_path_buf(), source }),
        }
        let spool = Spool { dir: dir.to_path_buf(), _lock: lock, counts: Arc::new(SpoolCounts::default()) };
        let (records, bytes) = spool.count_from(read_cursor(dir))?;
        spool.counts.backlog_records.store(records, Ordering::Relaxed);
        spool.counts.backlog_bytes.store(bytes, Ordering::Relaxed);
        Ok(spool)
    }

    /// Records and bytes from `cursor` to the end of the last segment.
    fn count_from(&self, cursor: Position) -> Result<(u64, u64), SpoolError> {
        let (mut records, mut bytes) = (0, 0);
        for segment in segments(&self.dir)?.into_iter().filter(|s| *s >= cursor.segment) {
            let path = segment_path(&self.dir, segment);
            let content = fs::read(&path).map_err(at(&path))?;
            let start = if segment == cursor.segment { (cursor.offset as usize).min(content.len()) } else { 0 };
            let (found, used) = decode(&content[start..], usize::MAX);
            records += found.len() as u64;
            bytes += used as u64;
        }
        Ok((records, bytes))
    }

    /// The appender for this run (a new segment after every existing one) and the drainer.
    pub fn start(&self) -> Result<(Appender, Drainer), SpoolError> {
        let existing = segments(&self.dir)?;
        let segment = existing.last().map_or(1, |last| last + 1);
        let end_of_earlier = Position { segment, offset: 0 };
        let (written, watch) = watch::channel(end_of_earlier);
        let appender = Appender::create(self.dir.clone(), segment, written, Arc::clone(&self.counts))?;
        let drainer = Drainer {
            dir: self.dir.clone(),
            cursor: read_cursor(&self.dir),
            written: watch,
            counts: Arc::clone(&self.counts),
        };
        Ok((appender, drainer))
    }
}

/// Writes records at the end of the spool.
pub struct Appender {
    dir: PathBuf,
    file: File,
    position: Position,
    written: watch::Sender<Position>,
    counts: Arc<SpoolCounts>,
    unsynced: bool,
}

impl Appender {
    fn create(
        dir: PathBuf,
        segment: u64,
        written: watch::Sender<Position>,
        counts: Arc<SpoolCounts>,
    ) -> Result<Appender, SpoolError> {
        let path = segment_path(&dir, segment);
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(at(&path))?;
        // The new segment's name must survive a crash too.
        File::open(&dir).and_then(|d| d.sync_all()).map_err(at(&dir))?;
        Ok(Appender { dir, file, position: Position { segment, offset: 0 }, written, counts, unsynced: false })
    }

    /// Appends the encoded records (`count` of them); they are visible to the drainer at once.
    pub fn append(&mut self, encoded: &[u8], count: u64) -> io::Result<()> {
        if self.position.offset >= SEGMENT_BYTES {
            self.rotate()?;
        }
        if let Err(error) = self.file.write_all(encoded) {
            // A partial write is cut off, so the next record starts where the reader expects.
            let _ = self.file.set_len(self.position.offset);
            return Err(error);
        }
        self.position.offset += encoded.len() as u64;
        self.unsynced = true;
        self.counts.backlog_records.fetch_add(count, Ordering::Relaxed);
        self.counts.backlog_bytes.fetch_add(encoded.len() as u64, Ordering::Relaxed);
        self.written.send_replace(self.position);
        Ok(())
    }

    /// `fdatasync`s what was appended since the last sync.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.sync()?;
        let segment = self.position.segment + 1;
        let path = segment_path(&self.dir, segment);
        self.file = OpenOptions::new().create(true).append(true).open(&path)?;
        File::open(&self.dir)?.sync_all()?;
        self.position = Position { segment, offset: 0 };
        Ok(())
    }
}

/// Reads the spool from the cursor, for the writer to put in the database.
pub struct Drainer {
    dir: PathBuf,
    cursor: Position,
    written: watch::Receiver<Position>,
    counts: Arc<SpoolCounts>,
}

/// Records read from the spool, and where the cursor goes once they are in the database.
pub struct Batch {
    pub records: Vec<AuditRecord>,
    pub bytes: u64,
    pub next: Position,
}

impl Drainer {
    /// Waits until the appender has written past the cursor (or `within` passes).
    pub async fn wait_for_more(&mut self, within: Duration) {
        let cursor = self.cursor;
        let _ = tokio::time::timeout(within, self.written.wait_for(|end| *end > cursor)).await;
    }

    /// Up to `max_records` records after the cursor, never past what the appender has written.
    /// Blocking file I/O: call it from `spawn_blocking` (see `read_next_blocking`).
    fn read_next(&self, max_records: usize) -> io::Result<Batch> {
        let end = *self.written.borrow();
        let mut cursor = self.cursor;
        loop {
            if cursor >= end {
                return Ok(Batch { records: Vec::new(), bytes: 0, next: cursor });
            }
            let path = segment_path(&self.dir, cursor.segment);
            let mut file = match File::open(&path) {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    cursor = self.next_segment_after(cursor.segment, end)?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let limit = if cursor.segment == end.segment { end.offset } else { file.metadata()?.len() };
            if cursor.offset >= limit {
                if cursor.segment == end.segment {
                    return Ok(Batch { records: Vec::new(), bytes: 0, next: cursor });
                }
                cursor = self.next_segment_after(cursor.segment, end)?;
                continue;
            }
            // A read of READ_BYTES holds about a thousand records; a record larger than that
            // (none of ours is) gets one read of its own size.
            let remaining = limit - cursor.offset;
            let mut decoded = (Vec::new(), 0);
            for want in [remaining.min(READ_BYTES), remaining.min((MAX_RECORD_BYTES + HEADER_BYTES) as u64)] {
                file.seek(SeekFrom::Start(cursor.offset))?;
                let mut bytes = Vec::with_capacity(want as usize);
                (&mut file).take(want).read_to_end(&mut bytes)?;
                decoded = decode(&bytes, max_records);
                if !decoded.0.is_empty() || want == remaining {
                    break;
                }
            }
            let (records, used) = decoded;
            if records.is_empty() {
                // Cut short or corrupt (a crash while writing): the rest of this segment is lost
                // to no one (it was never acknowledged as written); go on with the next.
                if cursor.segment == end.segment {
                    return Ok(Batch { records, bytes: 0, next: cursor });
                }
                cursor = self.next_segment_after(cursor.segment, end)?;
                continue;
            }
            let next = Position { segment: cursor.segment, offset: cursor.offset + used as u64 };
            return Ok(Batch { records, bytes: used as u64, next });
        }
    }

    fn next_segment_after(&self, segment: u64, end: Position) -> io::Result<Position> {
        let later = segments(&self.dir)
            .map_err(|error| io::Error::other(error.to_string()))?
            .into_iter()
            .find(|s| *s > segment)
            .unwrap_or(end.segment);
        Ok(Position { segment: later.min(end.segment), offset: 0 })
    }

    /// Reads the next batch off the async runtime's threads.
    pub async fn read_next_blocking(self, max_records: usize) -> (Drainer, io::Result<Batch>) {
        match tokio::task::spawn_blocking(move || {
            let batch = self.read_next(max_records);
            (self, batch)
        })
        .await
        {
            Ok(done) => done,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }

    /// The batch is in the database: move the cursor past it, save it, and delete the segments
    /// wholly before it.
    pub fn commit(&mut self, batch: &Batch) -> io::Result<()> {
        if batch.next == self.cursor {
            return Ok(());
        }
        self.cursor = batch.next;
        self.counts.backlog_records.fetch_sub(batch.records.len() as u64, Ordering::Relaxed);
        self.counts.backlog_bytes.fetch_sub(batch.bytes, Ordering::Relaxed);
        let temporary = self.dir.join("cursor.new");
        fs::write(&temporary, format!("{} {}\n", self.cursor.segment, self.cursor.offset))?;
        fs::rename(&temporary, self.dir.join("cursor"))?;
        for segment in segments(&self.dir).map_err(|error| io::Error::other(error.to_string()))? {
            if segment < self.cursor.segment {
                let _ = fs::remove_file(segment_path(&self.dir, segment));
            }
        }
        Ok(())
    }

    /// Where the drainer is.
    pub fn cursor(&self) -> Position {
        self.cursor
    }

    /// Whether everything written has been drained.
    pub fn is_drained(&self) -> bool {
        self.cursor >= *self.written.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(hook_instance: &str) -> AuditRecord {
        AuditRecord {
            invocation_id: uuid::Uuid::new_v4(),
            hook_instance: hook_instance.to_owned(),
            service_id: "posterior-knee-pain".to_owned(),
            hook: "patient-view".to_owned(),
            invoked_at: time::OffsetDateTime::UNIX_EPOCH,
            rules_version: "1".to_owned(),
            patient_hash: "00".to_owned(),
            latency: Duration::from_micros(1500),
            data_sources: vec![("patient".to_owned(), "sent".to_owned())],
            cards: Vec::new(),
        }
    }

    fn append(appender: &mut Appender, names: &[&str]) {
        let mut encoded = Vec::new();
        for name in names {
            encode(&record(name), &mut encoded);
        }
        appender.append(&encoded, names.len() as u64).expect("appended");
    }

    fn names(batch: &Batch) -> Vec<String> {
        batch.records.iter().map(|r| r.hook_instance.clone()).collect()
    }

    #[test]
    fn records_come_back_in_order_and_the_cursor_survives_a_restart() {
        let dir = tempfile::tempdir().expect("a folder");
        {
            let spool = Spool::open(dir.path()).expect("opened");
            let (mut appender, mut drainer) = spool.start().expect("started");
            append(&mut appender, &["a", "b", "c"]);
            let batch = drainer.read_next(2).expect("read");
            assert_eq!(names(&batch), ["a", "b"]);
            drainer.commit(&batch).expect("committed");
            assert_eq!(spool.counts.backlog_records.load(Ordering::Relaxed), 1);
        }
        // A restart: "c" was never committed, so it is still there, and counted.
        let spool = Spool::open(dir.path()).expect("reopened");
        assert_eq!(spool.counts.backlog_records.load(Ordering::Relaxed), 1);
        let (mut appender, drainer) = spool.start().expect("started");
        append(&mut appender, &["d"]);
        let batch = drainer.read_next(10).expect("read");
        assert_eq!(names(&batch), ["c"], "the earlier run's segment first");
    }

    #[test]
    fn a_record_cut_short_by_a_crash_ends_its_segment_and_the_next_segment_is_read() {
        let dir = tempfile::tempdir().expect("a folder");
        {
            let spool = Spool::open(dir.path()).expect("opened");
            let (mut appender, _) = spool.start().expect("started");
            append(&mut appender, &["kept"]);
            let mut torn = Vec::new();
            encode(&record("torn"), &mut torn);
            appender.file.write_all(&torn[..torn.len() - 3]).expect("a torn write");
        }
        let spool = Spool::open(dir.path()).expect("reopened");
        assert_eq!(spool.counts.backlog_records.load(Ordering::Relaxed), 1, "the torn record is not counted");
        let (mut appender, mut drainer) = spool.start().expect("started");
        append(&mut appender, &["after"]);
        let first = drainer.read_next(10).expect("read");
        assert_eq!(names(&first), ["kept"]);
        drainer.commit(&first).expect("committed");
        let second = drainer.read_next(10).expect("read");
        assert_eq!(names(&second), ["after"]);
        drainer.commit(&second).expect("committed");
        assert!(drainer.is_drained());
        assert_eq!(segments(dir.path()).expect("listed").len(), 1, "drained segments are deleted");
    }

    #[test]
    fn one_spool_folder_serves_one_process() {
        let dir = tempfile::tempdir().expect("a folder");
        let _first = Spool::open(dir.path()).expect("opened");
        assert!(matches!(Spool::open(dir.path()), Err(SpoolError::InUse(_))));
    }

    #[test]
    fn a_full_segment_rolls_over_to_the_next() {
        let dir = tempfile::tempdir().expect("a folder");
        let spool = Spool::open(dir.path()).expect("opened");
        let (mut appender, mut drainer) = spool.start().expect("started");
        appender.position.offset = SEGMENT_BYTES;
        append(&mut appender, &["next"]);
        assert_eq!(appender.position.segment, 2);
        let batch = drainer.read_next(10).expect("read");
        assert_eq!(names(&batch), ["next"]);
        drainer.commit(&batch).expect("committed");
        assert!(drainer.is_drained());
    }
}
