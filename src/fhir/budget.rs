//! The bytes read from FHIR servers, bounded twice: per hook call (`fhir.max_bytes_per_call`)
//! and for the whole process (`fhir.max_bytes_in_flight`), so that memory stays bounded however
//! many calls fetch at once.
//!
//! Every chunk of every response takes its size from the process's [`ByteBudget`] before it is
//! kept, and the call holds what it took until its fetching is over and what it read has been
//! turned into views (the views are smaller than the bytes they were read from). A call that
//! cannot get its bytes before its deadline stops reading: its keys are read in part or not
//! at all, and the card says so.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::record::Cause;

/// The process's budget of bytes read from FHIR servers and not yet released.
#[derive(Debug)]
pub struct ByteBudget {
    semaphore: Arc<Semaphore>,
    total: usize,
    peak: AtomicUsize,
}

impl ByteBudget {
    pub fn new(total: usize) -> Arc<ByteBudget> {
        let total = total.min(Semaphore::MAX_PERMITS);
        Arc::new(ByteBudget { semaphore: Arc::new(Semaphore::new(total)), total, peak: AtomicUsize::new(0) })
    }

    /// Bytes held now by calls that are fetching.
    pub fn in_use(&self) -> usize {
        self.total - self.semaphore.available_permits()
    }

    /// The most bytes ever held at once since the start.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// The budget's size.
    pub fn total(&self) -> usize {
        self.total
    }
}

/// One call's share: what it has read, and the bytes it holds of the process's budget.
#[derive(Debug)]
pub struct CallBytes {
    budget: Arc<ByteBudget>,
    cap: usize,
    read: AtomicUsize,
    held: Mutex<Option<OwnedSemaphorePermit>>,
}

impl CallBytes {
    pub fn new(budget: Arc<ByteBudget>, cap: usize) -> CallBytes {
        CallBytes { budget, cap, read: AtomicUsize::new(0), held: Mutex::new(None) }
    }

    /// Whether `more` bytes would take the call over its cap.
    pub fn would_exceed(&self, more: u64) -> bool {
        (self.read.load(Ordering::Relaxed) as u64).saturating_add(more) > self.cap as u64
    }

    /// Takes `bytes` for a chunk just received: refused when the call would go over its cap,
    /// or when the process's budget cannot give them before `deadline`.
    pub async fn take(&self, bytes: usize, deadline: Instant) -> Result<(), Cause> {
        let before = self.read.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.cap {
            return Err(Cause::CallByteCap);
        }
        let Ok(count) = u32::try_from(bytes) else {
            return Err(Cause::CallByteCap);
        };
        let permit = tokio::time::timeout_at(deadline, Arc::clone(&self.budget.semaphore).acquire_many_owned(count))
            .await
            .map_err(|_| Cause::ByteBudget)?
            .map_err(|_| Cause::ByteBudget)?;
        self.budget.peak.fetch_max(self.budget.in_use(), Ordering::Relaxed);
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_mut() {
            Some(all) => all.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }

    /// Bytes the call has read.
    pub fn read(&self) -> usize {
        self.read.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    #[tokio::test]
    async fn a_call_is_refused_past_its_own_cap() {
        let call = CallBytes::new(ByteBudget::new(1000), 100);
        assert_eq!(call.take(60, soon()).await, Ok(()));
        assert_eq!(call.take(60, soon()).await, Err(Cause::CallByteCap));
    }

    #[tokio::test]
    async fn calls_share_the_process_budget_and_give_it_back_when_they_end() {
        let budget = ByteBudget::new(100);
        let first = CallBytes::new(Arc::clone(&budget), 100);
        let second = CallBytes::new(Arc::clone(&budget), 100);
        assert_eq!(first.take(70, soon()).await, Ok(()));
        assert_eq!(second.take(40, soon()).await, Err(Cause::ByteBudget), "only 30 bytes are left");
        assert_eq!(budget.in_use(), 70);
        drop(first);
        assert_eq!(budget.in_use(), 0);
        assert_eq!(second.take(40, soon()).await, Ok(()));
        assert_eq!(budget.peak(), 70);
    }

    #[tokio::test]
    async fn a_waiting_call_gets_its_bytes_when_another_call_ends() {
        let budget = ByteBudget::new(100);
        let first = CallBytes::new(Arc::clone(&budget), 100);
        first.take(100, soon()).await.expect("all of it");
        let second = CallBytes::new(Arc::clone(&budget), 100);
        let later = Instant::now() + Duration::from_secs(5);
        let (taken, ()) = tokio::join!(second.take(50, later), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(first);
        });
        assert_eq!(taken, Ok(()));
    }
}
