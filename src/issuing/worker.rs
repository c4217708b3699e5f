//! Workers that drain the queue, and the reconciliation poll that refills it from the CRM.

use std::time::Duration;

use tokio::sync::watch;

use super::{Issuer, Prefetch};
use crate::store::JobKind;

#[derive(Debug, PartialEq, Eq)]
pub enum ExecutionOutcome {
    TaskCompleted,
    EmptyQueue,
}

impl Issuer {
    /// Claims and runs one ready job. Public so tests can drain the queue deterministically.
    pub async fn try_execute_task(&self, worker: &str) -> anyhow::Result<ExecutionOutcome> {
        let lease = self.config.lease.as_millis() as i64;
        let mut claimed = self.store.claim_jobs(worker, 1, lease).await?;
        let Some(job) = claimed.pop() else {
            return Ok(ExecutionOutcome::EmptyQueue);
        };
        self.run_job(job, &Prefetch::none(), false).await?;
        Ok(ExecutionOutcome::TaskCompleted)
    }

    /// Claims up to `batch_size` ready jobs and runs them with one bulk read of participants, events
    /// and contacts and one `batch` write of QR files and stage moves per 50.
    pub async fn try_execute_batch(&self, worker: &str) -> anyhow::Result<ExecutionOutcome> {
        if self.config.batch_size <= 1 {
            return self.try_execute_task(worker).await;
        }
        let lease = self.config.lease.as_millis() as i64;
        let claimed = self
            .store
            .claim_jobs(worker, self.config.batch_size as i64, lease)
            .await?;
        if claimed.is_empty() {
            return Ok(ExecutionOutcome::EmptyQueue);
        }
        // A slow portal can make a batch outlast its lease; renew it while the batch runs, or
        // another worker would take the same jobs over and over.
        let heartbeat = async {
            let period = (self.config.lease / 3).max(std::time::Duration::from_millis(200));
            loop {
                tokio::time::sleep(period).await;
                if let Err(e) = self.store.renew_leases(worker, lease).await {
                    tracing::warn!(error = ?e, "could not renew leases");
                }
            }
        };
        tokio::select! {
            result = self.run_batch(claimed) => result?,
            () = heartbeat => {}
        }
        Ok(ExecutionOutcome::TaskCompleted)
    }

    async fn run_batch(&self, claimed: Vec<crate::store::ClaimedJob>) -> anyhow::Result<()> {
        let ids: Vec<u64> = claimed
            .iter()
            .map(|c| c.job.participant_id as u64)
            .collect();
        let always: std::collections::BTreeSet<u64> = claimed
            .iter()
            .filter(|c| c.job.kind != JobKind::Issue || c.job.progress.confirmed)
            .map(|c| c.job.participant_id as u64)
            .collect();
        let generate = &self.stages.generate;
        let prefetch = Prefetch::load(&self.crm, &ids, |p| {
            always.contains(&p.id) || generate.contains(&p.stage_id)
        })
        .await;
        let mut completions = Vec::new();
        for job in claimed {
            if let Some(c) = self.run_job(job, &prefetch, true).await? {
                completions.push(c);
            }
        }
        let writes: Vec<(u64, String, Vec<u8>)> = completions
            .iter()
            .map(|c| {
                (
                    c.claimed.job.participant_id as u64,
                    c.stage.clone(),
                    c.qr.clone(),
                )
            })
            .collect();
        let results = self.crm.complete_many(&writes).await;
        for (c, result) in completions.into_iter().zip(results) {
            self.complete(c.claimed, result).await?;
        }
        Ok(())
    }

    /// Queues a participant and wakes a worker; the job re-reads the item before acting.
    pub async fn hint(&self, participant_id: u64) -> anyhow::Result<bool> {
        let queued = self
            .store
            .enqueue(participant_id as i64, JobKind::Issue)
            .await?;
        if queued {
            self.wake.notify_one();
        }
        Ok(queued)
    }
}

/// A name unique to this worker across instances, for leases.
pub fn worker_name(n: usize) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    let nonce: u32 = rand::random();
    format!("{host}-{}-{n}-{nonce:08x}", std::process::id())
}

/// Runs `count` workers until `shutdown` turns true; each finishes its job in flight, then releases
/// anything it still holds.
pub async fn run_workers(issuer: Issuer, count: usize, shutdown: watch::Receiver<bool>) {
    let mut handles = Vec::new();
    for n in 0..count.max(1) {
        let issuer = issuer.clone();
        let mut shutdown = shutdown.clone();
        handles.push(tokio::spawn(async move {
            let name = worker_name(n);
            loop {
                if *shutdown.borrow() {
                    break;
                }
                let idle = match issuer.try_execute_batch(&name).await {
                    Ok(ExecutionOutcome::TaskCompleted) => continue,
                    Ok(ExecutionOutcome::EmptyQueue) => Duration::from_millis(1000),
                    Err(e) => {
                        tracing::error!(error = ?e, "worker step failed");
                        Duration::from_secs(2)
                    }
                };
                tokio::select! {
                    _ = issuer.wake.notified() => {}
                    _ = tokio::time::sleep(idle) => {}
                    _ = shutdown.changed() => {}
                }
            }
            match issuer.store.release_jobs(&name).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(released = n, "released leased jobs on shutdown"),
                Err(e) => tracing::warn!(error = ?e, "could not release leased jobs"),
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}

/// Every `interval`, queues everyone sitting in «Сформировать документ»: Bitrix24 never re-sends
/// a lost event, so this is what guarantees no certificate waits forever.
pub async fn run_poll(issuer: Issuer, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    if interval.is_zero() {
        return;
    }
    loop {
        let stages: Vec<String> = issuer.stages.generate.iter().cloned().collect();
        match issuer.crm.ids_in_stages(&stages).await {
            Ok(ids) => {
                let mut queued = 0;
                for id in ids {
                    match issuer.hint(id).await {
                        Ok(true) => queued += 1,
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = ?e, "poll could not queue {id}"),
                    }
                }
                if queued > 0 {
                    tracing::info!(queued, "reconciliation poll queued participants");
                }
            }
            Err(e) => tracing::warn!(error = %e, "reconciliation poll failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}
